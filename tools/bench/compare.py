#!/usr/bin/env python3
"""The engine beside numpy/PyTorch on OpenBLAS, alternating, in one table per section (medians
over rounds of each side's per-run median; ratio = engine / reference time, below 1: the engine
is faster; for GEMM the ratio is of GFLOP/s, engine / numpy, above 1: the engine is faster).
Run it through tools/bench/compare.sh, which unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE.

    compare.py ENGINE [--rounds 3] [--iters 10] [--only gemm,ops,step] [--vocab VOCAB] [--model DIR]
               [--batch 16] [--len 128]

Sections: GEMM (1024³ and bert-base linear shapes: forward y = x·Wᵀ, dX = dY·W, dW = dYᵀ·X,
at 512 tokens and at an odd 509), the ops of `engine bench ops`, and a whole BERT training step
(full fine-tuning and LoRA) with each process's peak RSS (from wait4). Installs nothing.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))


def arg(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


engine = sys.argv[1]
rounds, iters = arg("--rounds", 3), arg("--iters", 10)
only = arg("--only", "gemm,ops,step").split(",")
batch, length = arg("--batch", 16), arg("--len", 128)


def load():
    return "load average %.1f %.1f %.1f" % os.getloadavg()


# ------------------------------------------------------------------ which BLAS
import numpy as np  # noqa: E402
import torch  # noqa: E402

blas = [l.split()[-1] for l in open("/proc/self/maps") if re.search(r"blas", l)]
blas = sorted({os.path.realpath(p) for p in blas})
print("BLAS libraries mapped into this process (numpy and torch):", *blas, sep="\n  ")
try:
    from threadpoolctl import threadpool_info
    for info in threadpool_info():
        print("  threadpoolctl:", {k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")})
    kernels = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
except ImportError:
    print("  (no threadpoolctl; numpy's build configuration follows)")
    np.show_config()
    kernels = [p for p in blas if "openblas" in p]
if not kernels or not any("openblas" in p for p in blas) or any("blas/libblas" in p for p in blas):
    sys.exit("compare: numpy/PyTorch do not run on OpenBLAS here (apt-get install libopenblas0-pthread; "
             "`update-alternatives --display libblas.so.3-x86_64-linux-gnu` shows which libblas.so.3 is used)")
print(f"numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} threads, "
      f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}")
print(f"rounds {rounds} (engine and reference alternating), median of {iters} calls per run; {load()}")
torch.set_num_threads(os.cpu_count())


def med(xs):
    return statistics.median(xs)


def spread(xs):
    return f"{min(xs):.1f}–{max(xs):.1f}"


# ------------------------------------------------------------------ GEMM
# (label, m, n, k, transA, transB): C [m, n] = op(A)·op(B)
gemms = [("square", 1024, 1024, 1024, False, False)]
for tokens in (512, 509):
    for din, dout in ((768, 768), (768, 3072), (3072, 768)):
        tag = f"{din}→{dout} @{tokens}"
        gemms += [(f"fwd {tag}", tokens, dout, din, False, True),   # y = x·Wᵀ
                  (f"dX  {tag}", tokens, din, dout, False, False),  # dX = dY·W
                  (f"dW  {tag}", dout, din, tokens, True, False)]   # dW = dYᵀ·X


def numpy_gemm(m, n, k, ta, tb):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    a, b = (a.T if ta else a), (b.T if tb else b)
    c = np.empty((m, n), dtype=np.float32)
    for _ in range(3):
        np.matmul(a, b, out=c)
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        ts.append(time.perf_counter() - t0)
    return 2.0 * m * n * k / med(ts) / 1e9


def engine_gemm(m, n, k, ta, tb, dtype="f32"):
    cmd = [engine, "bench", "gemm", "--m", str(m), "--n", str(n), "--k", str(k), "--iters", str(iters), "--json", "--dtype", dtype]
    cmd += ["--ta"] * ta + ["--tb"] * tb
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["gflops"]


if "gemm" in only:
    eng, ref = {g: [] for g in gemms}, {g: [] for g in gemms}
    for r in range(rounds):
        for g in gemms:
            eng[g].append(engine_gemm(*g[1:]))
        for g in gemms:
            ref[g].append(numpy_gemm(*g[1:]))
        print(f"  gemm round {r + 1}: {load()}", flush=True)
    print("\n| GEMM (float32) | m×n×k | op | engine GFLOP/s | numpy GFLOP/s | engine/numpy |")
    print("|---|---|---|---|---|---|")
    for g in gemms:
        label, m, n, k, ta, tb = g
        op = ("Aᵀ" if ta else "A") + "·" + ("Bᵀ" if tb else "B")
        print(f"| {label} | {m}×{n}×{k} | {op} | {med(eng[g]):.1f} ({spread(eng[g])}) | {med(ref[g]):.1f} ({spread(ref[g])}) | {med(eng[g]) / med(ref[g]):.2f} |")
    print(f"({load()})\n", flush=True)

# ------------------------------------------------------------------ ops
if "ops" in only:
    sys.path.insert(0, here)
    from cpu_ops_vs_torch import engine_ops, torch_ops
    eng, ref, shapes = {}, {}, {}
    for r in range(rounds):
        for name, j in engine_ops(engine, iters).items():
            eng.setdefault(name, []).append((j["fwd_ms"], j["fwd_bwd_ms"]))
            shapes[name] = j["shape"]
        for name, t in torch_ops(iters).items():
            ref.setdefault(name, []).append(t)
        print(f"  ops round {r + 1}: {load()}", flush=True)
    print("\n| op | shape | engine fwd ms | torch fwd ms | ratio | engine f+b ms | torch f+b ms | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ref:
        ef, eb = med([x[0] for x in eng[name]]), med([x[1] for x in eng[name]])
        tf, tb = med([x[0] for x in ref[name]]), med([x[1] for x in ref[name]])
        print(f"| {name} | {shapes[name]} | {ef:.2f} | {tf:.2f} | {ef / tf:.2f} | {eb:.2f} | {tb:.2f} | {eb / tb:.2f} |")
    print(f"({load()})\n", flush=True)


# ------------------------------------------------------------------ whole step
if "step" in only:
    model = arg("--model", "")
    if not model:
        vocab = arg("--vocab", "")
        if not vocab:  # shared/ beside the checkout, or inside it
            root = os.path.dirname(os.path.dirname(here))
            found = [p for p in (os.path.join(d, "shared/tokenizers/bert-base-uncased/vocab.txt") for d in (root, os.path.dirname(root), os.path.dirname(os.path.dirname(root)))) if os.path.exists(p)]
            if not found:
                sys.exit("compare: no bert-base-uncased vocab.txt found under shared/; pass --vocab FILE or --model DIR")
            vocab = found[0]
        model = os.path.join(tempfile.mkdtemp(prefix="bench-bert-mini-"), "model")
        subprocess.run([engine, "init", "--vocab", vocab, "--out", model, "--layers", "4", "--hidden", "256", "--heads", "4"],
                       check=True, capture_output=True)
    rows = {}
    for method in ("full", "lora"):
        e_ms, e_rss, t_ms, t_rss = [], [], [], []
        for r in range(rounds):
            for side in ("engine", "torch"):
                cmd = ([engine, "bench", "step", "--model", model, "--batch", str(batch), "--len", str(length), "--iters", "5", "--method", method]
                       if side == "engine" else
                       [sys.executable, os.path.join(here, "torch_bert_step.py"), model, "--batch", str(batch), "--len", str(length), "--iters", "5", "--method", method])
                t0 = time.time()
                p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                _, status, usage = os.wait4(p.pid, 0)
                out, err = p.stdout.read(), p.stderr.read()
                if status != 0:
                    sys.exit(f"compare: {' '.join(cmd)} failed: {err.strip() or out.strip()}")
                rss = usage.ru_maxrss / 1024
                if side == "engine":
                    e_ms.append(float(re.search(r"^step\s+([\d.]+) ms", out, re.M).group(1)))
                    e_rss.append(rss)
                else:
                    t_ms.append(json.loads(out)["step"])
                    t_rss.append(rss)
            print(f"  step {method} round {r + 1}: {load()}", flush=True)
        rows[method] = (e_ms, t_ms, e_rss, t_rss)
    tokens = batch * length
    print(f"\n| step (4-layer width-256 BERT, batch {batch}×{length}, AdamW) | engine ms | torch ms | engine tokens/s ÷ torch's | engine peak RSS MB | torch peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for method, (e_ms, t_ms, e_rss, t_rss) in rows.items():
        print(f"| {method} | {med(e_ms):.0f} ({spread(e_ms)}) | {med(t_ms):.0f} ({spread(t_ms)}) | {med(t_ms) / med(e_ms):.2f} | {max(e_rss):.0f} | {max(t_rss):.0f} |")
    print(f"({load()}; {tokens} tokens per step)")

#!/usr/bin/env python3
"""Side-by-side CPU op timings: the engine (`engine bench ops --json`) and PyTorch on the same
cases, same machine, same run, same thread count. Prints a table with the ratio engine/torch.

    /usr/bin/python3 tools/bench/cpu_ops_vs_torch.py [path/to/engine] [--iters N]

Needs Debian's python3-torch (PyTorch CPU). Build the engine in Release first:
    dotnet build -c Release tools/Engine.Cli
tools/bench/compare.sh imports torch_ops() from here and alternates the two sides several times.
"""
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def make_cases():
    g = torch.Generator().manual_seed(1)

    def r(*s, std=1.0):
        return torch.randn(*s, generator=g) * std

    def attention(q, k, v):
        return torch.softmax(q @ k.transpose(-1, -2) / 8.0, -1) @ v

    return {
        "linear": ([r(512, 768), r(768, 768, std=0.02), r(768)], lambda x, w, b: F.linear(x, w, b)),
        "linear_up": ([r(512, 768), r(3072, 768, std=0.02), r(3072)], lambda x, w, b: F.linear(x, w, b)),
        "attention": ([r(4, 12, 128, 64) for _ in range(3)], attention),
        "attention_long": ([r(8, 12, 512, 64) for _ in range(3)], attention),
        "bmm": ([r(48, 128, 64), r(48, 128, 64)], lambda q, k: q @ k.transpose(-1, -2)),
        "layer_norm": ([r(512, 768), r(768), r(768)], lambda x, w, b: F.layer_norm(x, (768,), w, b, 1e-12)),
        "rms_norm": ([r(512, 2048), r(2048)], lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w),
        "gelu": ([r(512, 3072)], lambda x: F.gelu(x)),
        "softmax": ([r(6144, 128)], lambda x: torch.softmax(x, -1)),
        "permute": ([r(4, 128, 12, 64)], lambda x: x.transpose(1, 2).contiguous()),
        "cross_entropy": ([r(512, 30522)], lambda x: F.cross_entropy(x, torch.arange(512) * 37 % 30522)),
    }


def median(fn, iters):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def torch_ops(iters, names=None):
    """{case: (forward ms, forward+backward ms)}, medians of iters calls."""
    torch.set_num_threads(os.cpu_count())
    out = {}
    for name, (inputs, f) in make_cases().items():
        if names is not None and name not in names:
            continue
        with torch.no_grad():
            fwd = median(lambda: f(*inputs), iters)
        leaves = [t.clone().requires_grad_(True) for t in inputs]

        def step():
            y = f(*leaves)
            y.backward(torch.ones_like(y))
            for t in leaves:
                t.grad = None
        out[name] = (fwd, median(step, iters))
    return out


def engine_ops(engine, iters):
    """{case: json line} from `engine bench ops --json`."""
    out = subprocess.run([engine, "bench", "ops", "--json", "--iters", str(iters)], check=True, capture_output=True, text=True).stdout
    return {j["case"]: j for j in map(json.loads, out.strip().splitlines())}


if __name__ == "__main__":
    engine = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "tools/Engine.Cli/bin/Release/net10.0/engine"
    iters = int(sys.argv[sys.argv.index("--iters") + 1]) if "--iters" in sys.argv else 10
    torch_ms = torch_ops(iters)
    eng = engine_ops(engine, iters)
    print(f"threads: {os.cpu_count()}, torch {torch.__version__}, median of {iters}")
    print(f"{'case':<14} {'shape':<28} {'engine fwd':>10} {'torch fwd':>10} {'ratio':>6}   {'engine f+b':>10} {'torch f+b':>10} {'ratio':>6}")
    for name, (tf, tb) in torch_ms.items():
        e = eng[name]
        print(f"{name:<14} {e['shape']:<28} {e['fwd_ms']:>10.2f} {tf:>10.2f} {e['fwd_ms'] / tf:>6.1f}   {e['fwd_bwd_ms']:>10.2f} {tb:>10.2f} {e['fwd_bwd_ms'] / tb:>6.1f}")

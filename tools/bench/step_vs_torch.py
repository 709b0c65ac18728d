#!/usr/bin/env python3
"""Side-by-side training-step timings: `engine bench step` and PyTorch + transformers on the same
model folder, same batch, same device, same run. Prints a table with the ratio engine/torch.

    python3 tools/bench/step_vs_torch.py ENGINE MODEL_DIR [--device cuda] [--batch 32] [--len 128] [--iters 10] [--dtype f32|bf16]

The step is split the same way on both sides: forward + loss (read back to the host), backward,
gradient clipping (global norm 1.0), AdamW update + zero_grad; each part ends with a device
synchronisation. Float32 on both sides, TF32 off on both (torch.backends.*.allow_tf32 = False);
with --dtype bf16 the engine rounds GEMM inputs to bf16 (float32 accumulation) and PyTorch runs
the forward under torch.autocast(dtype=torch.bfloat16) (which also lowers some other ops, so the
comparison is of the user-facing modes, not identical arithmetic).
Needs torch and transformers (the GPU host has them; Debian's python3-torch has no transformers).
"""
import re
import statistics
import subprocess
import sys
import time


def arg(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


engine, model_dir = sys.argv[1], sys.argv[2]
device, batch, length, iters = arg("--device", "cuda"), arg("--batch", 32), arg("--len", 128), arg("--iters", 10)
dtype = arg("--dtype", "f32")

# ---------------------------------------------------------------- the engine
out = subprocess.run([engine, "bench", "step", "--model", model_dir, "--batch", str(batch), "--len", str(length),
                      "--iters", str(iters), "--device", device, "--dtype", dtype], capture_output=True, text=True)
if out.returncode != 0:
    sys.exit(f"engine bench step failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
ours = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(forward|backward|clip|optimizer|step)\s+([\d.]+) ms", out.stdout, re.M)}
header = out.stdout.splitlines()[0]

# ---------------------------------------------------------------- PyTorch
import torch
from transformers import AutoModelForSequenceClassification

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = torch.device(device)
model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, ignore_mismatched_sizes=True).to(dev)
model.train()
g = torch.Generator().manual_seed(1)
ids = torch.randint(1, model.config.vocab_size, (batch, length), generator=g).to(dev)
labels = torch.randint(0, 2, (batch,), generator=g).to(dev)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


parts = {"forward": [], "backward": [], "clip": [], "optimizer": []}
for i in range(iters + 1):
    t0 = time.perf_counter()
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
        loss = model(input_ids=ids, labels=labels).loss
    loss.item()
    t1 = time.perf_counter()
    loss.backward()
    sync()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    sync()
    t3 = time.perf_counter()
    opt.step()
    opt.zero_grad()
    sync()
    t4 = time.perf_counter()
    if i == 0:
        continue
    for k, a, b in (("forward", t0, t1), ("backward", t1, t2), ("clip", t2, t3), ("optimizer", t3, t4)):
        parts[k].append((b - a) * 1000)
theirs = {k: statistics.median(v) for k, v in parts.items()}
theirs["step"] = sum(theirs.values())

print(header)
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu'}, {dtype}")
print(f"| part      | engine ms | torch ms | engine/torch |")
print(f"|-----------|-----------|----------|--------------|")
for k in ("forward", "backward", "clip", "optimizer", "step"):
    print(f"| {k:<9} | {ours[k]:9.2f} | {theirs[k]:8.2f} | {ours[k] / theirs[k]:12.2f} |")
print(f"tokens/s: engine {batch * length / (ours['step'] / 1000):,.0f}, torch {batch * length / (theirs['step'] / 1000):,.0f}")

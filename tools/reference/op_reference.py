#!/usr/bin/env python3
"""Op-level reference fixtures from PyTorch (float64).

For each op: fixed inputs (drawn here from a seeded torch generator and written into the
fixture, so the C# side needs no torch RNG), an upstream gradient, PyTorch's output and
PyTorch's gradient of every differentiable input. The C# tests (tests/Engine.Tests/
ReferenceOpTests.cs) run the engine's ops on the same inputs and compare.

Run with Debian's python3 (apt-get install python3-torch; PyTorch 1.13 CPU):
    /usr/bin/python3 tools/reference/op_reference.py tests/Engine.Tests/Fixtures/op_reference.json
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
g = torch.Generator().manual_seed(1234)


def randn(*shape):
    return torch.randn(*shape, generator=g)


def enc(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def enc_int(t):
    return {"shape": list(t.shape), "int": True, "data": [int(v) for v in t.reshape(-1).tolist()]}


cases = {}


def case(name, inputs, fn, ints=None, params=None):
    """inputs: dict name -> tensor (float, differentiable); ints: dict of integer/constant tensors."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    out = fn(**leaves, **(ints or {}))
    up = randn(*out.shape) if out.dim() > 0 else torch.tensor(1.0)
    out.backward(up)
    cases[name] = {
        "params": params or {},
        "inputs": {k: enc(v) for k, v in inputs.items()},
        "constants": {k: (enc_int(v) if not v.is_floating_point() else enc(v)) for k, v in (ints or {}).items()},
        "upstream": enc(up),
        "output": enc(out),
        "grads": {k: enc(v.grad) for k, v in leaves.items()},
    }


x = randn(2, 3, 8) * 2
case("gelu", {"x": x}, lambda x: F.gelu(x))
case("gelu_tanh", {"x": x}, lambda x: F.gelu(x, approximate="tanh"))
case("silu", {"x": x}, lambda x: F.silu(x))
case("tanh", {"x": x}, lambda x: torch.tanh(x))
case("relu", {"x": x}, lambda x: torch.relu(x))
case("softmax", {"x": x}, lambda x: torch.softmax(x, -1))

case("layer_norm", {"x": randn(2, 3, 8), "w": randn(8), "b": randn(8)},
     lambda x, w, b: F.layer_norm(x, (8,), w, b, 1e-12), params={"eps": 1e-12})


def rms_norm(x, w, eps=1e-6):  # Hugging Face LlamaRMSNorm
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


case("rms_norm", {"x": randn(2, 3, 8), "w": randn(8)}, lambda x, w: rms_norm(x, w), params={"eps": 1e-6})

case("matmul", {"a": randn(2, 3, 5, 4), "b": randn(2, 3, 6, 4)},
     lambda a, b: a @ b.transpose(-1, -2), params={"transB": True})

case("linear", {"x": randn(2, 3, 5), "w": randn(4, 5), "b": randn(4)}, lambda x, w, b: F.linear(x, w, b))

ids = torch.tensor([[1, 3, 3, 0], [2, 2, 4, 1]])
case("embedding", {"w": randn(5, 3)}, lambda w, ids: F.embedding(ids, w), ints={"ids": ids})

# Attention: B=2, H=4, Hkv=2 (grouped-query), T=3 queries, S=5 keys (2 prefix keys), causal with
# the keys' offset S-T, additive padding mask over keys (row 1 pads its last key).
B, H, Hkv, T, S, D = 2, 4, 2, 3, 5, 4
mask = torch.zeros(B, S)
mask[1, 4] = -1e9


def attention(q, k, v, mask):
    kk = k.repeat_interleave(H // Hkv, dim=1)
    vv = v.repeat_interleave(H // Hkv, dim=1)
    scores = q @ kk.transpose(-1, -2) / math.sqrt(D) + mask[:, None, None, :]
    causal = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)
    scores = scores.masked_fill(~causal, float("-inf"))
    return torch.softmax(scores, -1) @ vv


case("attention", {"q": randn(B, H, T, D), "k": randn(B, Hkv, S, D), "v": randn(B, Hkv, S, D)},
     attention, ints={"mask": mask}, params={"causal": True})


def rope_tables(T, D, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), -1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), -1)


cos, sin = rope_tables(5, 6, 10000.0)
case("rope", {"x": randn(2, 2, 5, 6)}, lambda x: x * cos + rotate_half(x) * sin, params={"theta": 10000.0})

targets = torch.tensor([2, -100, 0, 1, 2])
case("cross_entropy", {"logits": randn(5, 3)}, lambda logits, t: F.cross_entropy(logits, t, ignore_index=-100),
     ints={"t": targets})
case("mse", {"pred": randn(6)}, lambda pred, target: F.mse_loss(pred, target), ints={"target": randn(6)})
case("bce_with_logits", {"logits": randn(3, 2) * 3},
     lambda logits, target: F.binary_cross_entropy_with_logits(logits, target), ints={"target": torch.rand(3, 2, generator=g)})

layers = {f"x{i}": randn(2, 3) for i in range(4)}
case("layer_mix", {**layers, "a": randn(4)},
     lambda x0, x1, x2, x3, a: sum(w * xi for w, xi in zip(torch.softmax(a, 0), [x0, x1, x2, x3])))

json.dump({"torch": torch.__version__, "cases": cases}, open(sys.argv[1], "w"), indent=None)
print(f"wrote {len(cases)} cases to {sys.argv[1]}")

#!/usr/bin/env python3
"""Reference fixture for the pretraining heads (PyTorch, float64).

An independent PyTorch computation of the two language-model heads the engine pretrains with,
written from transformers' definitions (BertLMPredictionHead with the decoder tied to the word
embeddings; LlamaForCausalLM's lm_head tied to embed_tokens, or untied, with the labels shifted
inside the loss), on small random inputs drawn here and stored in the fixture:

  mlm:          x [N, D] hidden states at the masked positions; labels [N] (one -100)
                logits = LayerNorm(gelu(x W^T + b)) E^T + bias;  loss = cross_entropy(logits, labels)
  causal_tied:  h [B, T, D] final hidden states, ids [B, T]
                logits = h E^T;  loss = cross_entropy(logits[:, :-1], ids[:, 1:])
  causal_untied: the same with a separate lm_head weight L [V, D]: logits = h L^T

For each: the inputs, the loss and the gradient of every input. tests/Engine.Tests/Pretraining/
HeadReferenceTests.cs runs the engine's MaskedLanguageModel.Head / CausalLanguageModel.Head on the
same numbers and compares.

Run with Debian's python3 (apt-get install python3-torch):
    /usr/bin/python3 tools/reference/pretrain_reference.py tests/Engine.Tests/Fixtures/pretrain_reference.json
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
g = torch.Generator().manual_seed(2024)


def randn(*shape, scale=1.0):
    return (torch.randn(*shape, generator=g) * scale).requires_grad_(True)


def enc(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def enc_int(t):
    return {"shape": list(t.shape), "int": True, "data": [int(v) for v in t.reshape(-1).tolist()]}


V, D, N = 11, 8, 5
cases = {}

# BertForMaskedLM's head at the masked positions.
x, W, b = randn(N, D), randn(D, D, scale=0.3), randn(D, scale=0.1)
lnw, lnb = (1 + 0.1 * torch.randn(D, generator=g)).requires_grad_(True), randn(D, scale=0.1)
E, bias = randn(V, D, scale=0.5), randn(V, scale=0.1)
labels = torch.tensor([3, 0, -100, 10, 7])
t = F.layer_norm(F.gelu(x @ W.T + b), (D,), lnw, lnb, eps=1e-12)
loss = F.cross_entropy(t @ E.T + bias, labels, ignore_index=-100)
loss.backward()
named = {"x": x, "dense.weight": W, "dense.bias": b, "LayerNorm.weight": lnw, "LayerNorm.bias": lnb, "embeddings": E, "bias": bias}
cases["mlm"] = {
    "inputs": {k: enc(v) for k, v in named.items()},
    "labels": enc_int(labels),
    "loss": float(loss),
    "grads": {k: enc(v.grad) for k, v in named.items()},
}

# LlamaForCausalLM's output layer, tied and untied.
B, T = 2, 4
ids = torch.randint(0, V, (B, T), generator=g)
for tied in (True, False):
    h, E = randn(B, T, D), randn(V, D, scale=0.5)
    L = None if tied else randn(V, D, scale=0.5)
    logits = h @ (E if tied else L).T
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    loss.backward()
    named = {"h": h, "embeddings": E} if tied else {"h": h, "embeddings": E, "lm_head": L}
    cases["causal_tied" if tied else "causal_untied"] = {
        "inputs": {k: enc(v) for k, v in named.items()},
        "ids": enc_int(ids),
        "loss": float(loss),
        # The untied embeddings get no gradient from the head: torch leaves .grad None.
        "grads": {k: enc(v.grad if v.grad is not None else torch.zeros_like(v)) for k, v in named.items()},
    }

with open(sys.argv[1], "w") as f:
    json.dump({"generator": "tools/reference/pretrain_reference.py", "torch": torch.__version__, "cases": cases}, f)
print(f"wrote {sys.argv[1]}: {', '.join(cases)}")

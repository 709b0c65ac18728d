#!/usr/bin/env python3
"""One PyTorch training step of a BERT sequence classifier (2 labels) built from a model folder's
config.json, without transformers (Debian's python3-torch has none): embeddings, post-norm
encoder layers (dropout as in training, GELU), pooler, classifier, cross-entropy, backward,
gradient clipping (global norm 1.0), AdamW. The same parts as `engine bench step`. Weights are
random (speed does not depend on their values).

    /usr/bin/python3 tools/bench/torch_bert_step.py MODEL_DIR [--batch 16] [--len 128] [--iters 5] [--method full|lora]

--method lora: rank 8, alpha 16, dropout 0.1 on query and value (the engine's defaults for
BERT); the base weights are frozen, the adapters, pooler and classifier train.
Prints one JSON line: medians of forward, backward, clip, optimizer and the step in ms.
"""
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def arg(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


model_dir = sys.argv[1]
batch, length, iters, method = arg("--batch", 16), arg("--len", 128), arg("--iters", 5), arg("--method", "full")
cfg = json.load(open(os.path.join(model_dir, "config.json")))
d, heads, ff = cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"]
eps, p_drop = cfg.get("layer_norm_eps", 1e-12), cfg.get("hidden_dropout_prob", 0.1)
a_drop = cfg.get("attention_probs_dropout_prob", 0.1)
torch.set_num_threads(os.cpu_count())
torch.manual_seed(1)


class LoraLinear(nn.Module):
    def __init__(self, base, r=8, alpha=16, dropout=0.1):
        super().__init__()
        self.base, self.scale, self.drop = base, alpha / r, nn.Dropout(dropout)
        self.a = nn.Parameter(torch.randn(r, base.in_features) / math.sqrt(base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, r))

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(self.drop(x), self.a), self.b) * self.scale


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.up, self.down = nn.Linear(d, ff), nn.Linear(ff, d)
        self.drop = nn.Dropout(p_drop)

    def forward(self, x, mask):
        B, T, _ = x.shape
        def split(t):
            return t.view(B, T, heads, d // heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads) + mask, -1)
        ctx = (F.dropout(p, a_drop, self.training) @ v).transpose(1, 2).reshape(B, T, d)
        x = self.ln1(x + self.drop(self.o(ctx)))
        return self.ln2(x + self.drop(self.down(F.gelu(self.up(x)))))


class Bert(nn.Module):
    def __init__(self):
        super().__init__()
        self.words = nn.Embedding(cfg["vocab_size"], d)
        self.positions = nn.Embedding(cfg["max_position_embeddings"], d)
        self.types = nn.Embedding(cfg.get("type_vocab_size", 2), d)
        self.ln = nn.LayerNorm(d, eps=eps)
        self.layers = nn.ModuleList(Layer() for _ in range(cfg["num_hidden_layers"]))
        self.pooler, self.classifier = nn.Linear(d, d), nn.Linear(d, 2)
        self.drop = nn.Dropout(p_drop)

    def forward(self, ids):
        T = ids.shape[1]
        pos = torch.arange(T)
        x = self.drop(self.ln(self.words(ids) + self.positions(pos) + self.types(torch.zeros_like(ids))))
        mask = torch.zeros(ids.shape[0], 1, 1, T)
        for layer in self.layers:
            x = layer(x, mask)
        return self.classifier(self.drop(torch.tanh(self.pooler(x[:, 0]))))


model = Bert()
if method == "lora":
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.layers:
        layer.q, layer.v = LoraLinear(layer.q), LoraLinear(layer.v)
    for p in list(model.pooler.parameters()) + list(model.classifier.parameters()):
        p.requires_grad_(True)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4)
g = torch.Generator().manual_seed(1)
ids = torch.randint(1, cfg["vocab_size"], (batch, length), generator=g)
labels = torch.randint(0, 2, (batch,), generator=g)
parts = {"forward": [], "backward": [], "clip": [], "optimizer": [], "step": []}
for i in range(iters + 1):
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(ids), labels)
    loss.item()
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    t3 = time.perf_counter()
    opt.step()
    opt.zero_grad()
    t4 = time.perf_counter()
    if i == 0:
        continue
    for k, a, b in (("forward", t0, t1), ("backward", t1, t2), ("clip", t2, t3), ("optimizer", t3, t4), ("step", t0, t4)):
        parts[k].append((b - a) * 1000)
print(json.dumps({k: statistics.median(v) for k, v in parts.items()} | {"trained": sum(p.numel() for p in params)}))

#!/usr/bin/env python3
"""Reference fixtures for the Llama family: tiny random LlamaForSequenceClassification-shaped
models (grouped-query attention: 4 heads, 2 key/value heads) saved as Hugging Face folders, plus
inputs with right and left padding and the outputs (hidden states, logits, loss, the gradient
of every parameter).

    /usr/bin/python3 tools/reference/llama_reference.py OUT_DIR [--independent]

With `transformers` installed (the GPU host), the models are transformers' own
(AutoModelForSequenceClassification from the config, saved with save_pretrained) and the
outputs are theirs. Without it (or with --independent) an independent PyTorch implementation
written from the architecture's description stands in (Debian's python3-torch); the fixture's
metadata "produced_by" says which one made it.

Variants:
  llama          rope_theta 10000, pad_token_id 0, float32 weights.
  llama3_bf16    rope_scaling llama3 (frequencies in all three regimes: kept, interpolated,
                 divided), attention_bias and mlp_bias, weights stored as BF16.
  qwen2_pad_eos  model_type qwen2 (q/k/v biases, none on o_proj), pad_token_id == eos_token_id,
                 rows ending in an attended eos (which the pooling counts as padding).

The reference forward and backward run in float64 on the stored weights. transformers computes
its rotary tables and RMSNorm in float32 even in a float64 model, so a transformers-made fixture
agrees with a float64 engine to about 1e-6, an independent one to rounding (~1e-12).

Outputs file (<name>/reference.safetensors): input_ids, attention_mask, labels (I64);
hidden_states.0 … hidden_states.L (HF's convention: embeddings, outputs of blocks 1 … L−1, then
the final-normed output of block L), last_hidden_state, logits, loss, pooled_positions (I64),
rope.inv_freq (F64, from the formula below), grad.<parameter name> (F64).
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from st_io import save_file  # noqa: E402

out_dir = sys.argv[1]
independent = "--independent" in sys.argv
if not independent:
    try:
        import transformers  # noqa: F401
    except ImportError:
        independent = True

BASE = dict(vocab_size=101, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, hidden_act="silu", max_position_embeddings=128, initializer_range=0.02,
            rms_norm_eps=1e-6, rope_theta=10000.0, attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=0, num_labels=3,
            id2label={"0": "negative", "1": "neutral", "2": "positive"},
            label2id={"negative": 0, "neutral": 1, "positive": 2})
CONFIGS = {
    "llama": dict(BASE, model_type="llama", architectures=["LlamaForSequenceClassification"]),
    "llama3_bf16": dict(BASE, model_type="llama", architectures=["LlamaForSequenceClassification"], attention_bias=True,
                        mlp_bias=True, torch_dtype="bfloat16",
                        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                          original_max_position_embeddings=200)),
    "qwen2_pad_eos": dict({k: v for k, v in BASE.items() if k not in ("attention_bias", "mlp_bias")},
                          model_type="qwen2", architectures=["Qwen2ForSequenceClassification"], pad_token_id=2,
                          use_sliding_window=False),
}
B, T = 4, 8


def inputs_for(kind):
    cfg = CONFIGS[kind]
    g = torch.Generator().manual_seed(11)
    pad, eos = cfg["pad_token_id"], cfg["eos_token_id"]
    ids = torch.randint(3, cfg["vocab_size"], (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.int64)
    mask[1, 5:] = 0   # right padding
    mask[2, :3] = 0   # left padding
    mask[3, 6:] = 0   # right padding
    ids[mask == 0] = pad
    if kind == "qwen2_pad_eos":
        ids[0, T - 1] = eos  # an attended trailing eos: pooling takes position T-2
        ids[1, 4] = eos      # eos then padding (also eos): pooling takes position 3
    labels = torch.tensor([2, 0, 1, 1])
    return ids, mask, labels


def rope_inv_freq(cfg):
    """transformers' default and llama3 frequencies, in float64."""
    d = cfg["hidden_size"] // cfg["num_attention_heads"]
    inv = [1.0 / cfg["rope_theta"] ** (2 * i / d) for i in range(d // 2)]
    s = cfg.get("rope_scaling")
    if s is None:
        return torch.tensor(inv, dtype=torch.float64)
    assert s["rope_type"] == "llama3"
    factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    out = []
    for f in inv:
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            out.append(f)
        elif wavelen > old / low:
            out.append(f / factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
    return torch.tensor(out, dtype=torch.float64)


def pooled_positions(cfg, ids):
    non_pad = (ids != cfg["pad_token_id"]).to(torch.int64)
    return (torch.arange(ids.shape[-1]) * non_pad).argmax(-1)


# ----------------------------------------------------------------------------- independent implementation
def param_shapes(cfg):
    d, i, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = d // H
    qkv_bias = cfg.get("attention_bias", False) or cfg["model_type"] == "qwen2"
    o_bias = cfg.get("attention_bias", False) and cfg["model_type"] != "qwen2"
    mlp_bias = cfg.get("mlp_bias", False)
    S = {"model.embed_tokens.weight": (V, d)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        for n, o, b in (("q_proj", H * D, qkv_bias), ("k_proj", Hkv * D, qkv_bias), ("v_proj", Hkv * D, qkv_bias),
                        ("o_proj", d, o_bias)):
            S[p + f"self_attn.{n}.weight"] = (o, H * D if n == "o_proj" else d)
            if b:
                S[p + f"self_attn.{n}.bias"] = (o,)
        for n, o, k in (("gate_proj", i, d), ("up_proj", i, d), ("down_proj", d, i)):
            S[p + f"mlp.{n}.weight"] = (o, k)
            if mlp_bias:
                S[p + f"mlp.{n}.bias"] = (o,)
        S[p + "input_layernorm.weight"] = (d,)
        S[p + "post_attention_layernorm.weight"] = (d,)
    S["model.norm.weight"] = (d,)
    S["score.weight"] = (cfg["num_labels"], d)
    return S


def init_params(cfg):
    g = torch.Generator().manual_seed(42)
    P = {}
    for n, shape in param_shapes(cfg).items():
        if n.endswith("norm.weight") or n.endswith("layernorm.weight"):
            P[n] = 1 + torch.randn(shape, generator=g) * 0.1  # non-trivial norm weights
        elif n.endswith(".bias"):
            P[n] = torch.randn(shape, generator=g) * 0.05
        elif n == "model.embed_tokens.weight":
            P[n] = torch.randn(shape, generator=g) * 0.5  # larger, so the states are not all tiny
        else:
            P[n] = torch.randn(shape, generator=g) * 0.15
    return {k: v.float() for k, v in P.items()}


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def independent_forward(cfg, P, ids, mask):
    d, H, Hkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D, eps = d // H, cfg["rms_norm_eps"]
    Bn, Tn = ids.shape
    lin = lambda x, n: F.linear(x, P[n + ".weight"], P.get(n + ".bias"))
    rms = lambda x, n: P[n + ".weight"] * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    # Positions 0..T-1 for every row (transformers: position_ids = cache_position.unsqueeze(0)).
    angles = torch.arange(Tn, dtype=torch.float64)[:, None] * rope_inv_freq(cfg)[None, :]
    emb = torch.cat((angles, angles), -1)
    cos, sin = emb.cos(), emb.sin()
    # One 4-D additive mask: the dtype's minimum where the key is in the future or padding.
    blocked = torch.triu(torch.ones(Tn, Tn, dtype=torch.bool), 1)[None, None] | (mask[:, None, None, :] == 0)
    add_mask = torch.zeros(Bn, 1, Tn, Tn, dtype=torch.float64).masked_fill(blocked, torch.finfo(torch.float64).min)
    h = F.embedding(ids, P["model.embed_tokens.weight"], padding_idx=cfg["pad_token_id"])
    states = [h]
    L = cfg["num_hidden_layers"]
    for l in range(L):
        p = f"model.layers.{l}."
        x = rms(h, p + "input_layernorm")
        q = lin(x, p + "self_attn.q_proj").view(Bn, Tn, H, D).transpose(1, 2)
        k = lin(x, p + "self_attn.k_proj").view(Bn, Tn, Hkv, D).transpose(1, 2)
        v = lin(x, p + "self_attn.v_proj").view(Bn, Tn, Hkv, D).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + add_mask, -1) @ v
        h = h + lin(a.transpose(1, 2).reshape(Bn, Tn, H * D), p + "self_attn.o_proj")
        x = rms(h, p + "post_attention_layernorm")
        h = h + lin(F.silu(lin(x, p + "mlp.gate_proj")) * lin(x, p + "mlp.up_proj"), p + "mlp.down_proj")
        if l < L - 1:
            states.append(h)
    h = rms(h, "model.norm")
    states.append(h)
    logits_all = F.linear(h, P["score.weight"])
    logits = logits_all[torch.arange(Bn), pooled_positions(cfg, ids)]
    return states, logits


def make(kind):
    cfg = CONFIGS[kind]
    folder = os.path.join(out_dir, kind)
    os.makedirs(folder, exist_ok=True)
    ids, mask, labels = inputs_for(kind)
    bf16 = cfg.get("torch_dtype") == "bfloat16"
    extra = {}
    if independent:
        P32 = init_params(cfg)
        if bf16:
            P32 = {k: v.bfloat16().float() for k, v in P32.items()}  # what the file holds, exactly
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        stored = {k: (v.bfloat16() if bf16 else v) for k, v in P32.items()}
        save_file(stored, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        P = {k: v.double().requires_grad_(True) for k, v in P32.items()}
        states, logits = independent_forward(cfg, P, ids, mask)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        grads = {k: v.grad for k, v in P.items()}
        produced_by = f"independent PyTorch implementation (torch {torch.__version__})"
    else:
        import transformers
        args = {k: v for k, v in cfg.items() if k not in ("model_type", "architectures", "torch_dtype")}
        conf = transformers.AutoConfig.for_model(cfg["model_type"], **args)
        conf.architectures = cfg["architectures"]
        torch.manual_seed(42)
        model = transformers.AutoModelForSequenceClassification.from_config(conf, attn_implementation="eager")
        with torch.no_grad():  # non-trivial norms, biases and scales so every gradient is tested
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.copy_(1 + torch.randn_like(p) * 0.1)
                elif n.endswith("bias"):
                    p.copy_(torch.randn_like(p) * 0.05)
                elif "embed_tokens" in n:
                    p.copy_(torch.randn_like(p) * 0.5)
                else:
                    p.copy_(torch.randn_like(p) * 0.15)
        if bf16:
            model = model.to(torch.bfloat16)
        model.save_pretrained(folder, safe_serialization=True)
        model = model.double().eval()
        out = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        out.loss.backward()
        states, logits, loss = out.hidden_states, out.logits, out.loss
        grads = {n: p.grad for n, p in model.named_parameters()}
        extra["rope.inv_freq_transformers"] = model.model.rotary_emb.inv_freq.detach().double()
        produced_by = f"transformers {transformers.__version__} (torch {torch.__version__})"
    ref = {"input_ids": ids, "attention_mask": mask, "labels": labels, "pooled_positions": pooled_positions(cfg, ids),
           "rope.inv_freq": rope_inv_freq(cfg), "last_hidden_state": states[-1].detach(), "logits": logits.detach(),
           "loss": loss.detach().reshape(())}
    ref.update(extra)
    for i, s in enumerate(states):
        ref[f"hidden_states.{i}"] = s.detach()
    for n, g in grads.items():
        ref["grad." + n] = g.detach()
    save_file(ref, os.path.join(folder, "reference.safetensors"), metadata={"produced_by": produced_by})
    print(f"{kind}: {folder} ({produced_by}); loss {loss.item():.6f}; pooled {pooled_positions(cfg, ids).tolist()}")


for kind in CONFIGS:
    make(kind)

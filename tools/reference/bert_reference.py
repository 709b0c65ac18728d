#!/usr/bin/env python3
"""Reference fixtures for the BERT family: a tiny random BERT and RoBERTa sequence classifier
saved as Hugging Face folders, plus inputs and outputs (hidden states, logits, loss and the
gradient of every parameter).

    python3 tools/reference/bert_reference.py OUT_DIR [--independent]

With `transformers` installed (the GPU host), the models are transformers'
BertForSequenceClassification / RobertaForSequenceClassification, saved with save_pretrained,
and the outputs are transformers' own. Without it (or with --independent) an independent
PyTorch implementation of the same forward stands in (Debian's python3-torch on a developer
machine); the fixture's metadata "produced_by" says which one made it.

Weights are stored in float32 as transformers saves them; the reference forward and backward
run in float64 on those weights, so the engine can be compared both in float64 (tight) and in
float32 (single-precision tolerances).

Outputs file (<name>/reference.safetensors): input_ids, attention_mask, token_type_ids, labels
(I64); hidden_states.0 … hidden_states.L, last_hidden_state, logits, loss, grad.<parameter
name> (F64).
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

CONFIGS = {
    "bert": dict(model_type="bert", architectures=["BertForSequenceClassification"], vocab_size=99, hidden_size=32,
                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, hidden_act="gelu",
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=64,
                 type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0,
                 position_embedding_type="absolute", num_labels=3,
                 id2label={"0": "negative", "1": "neutral", "2": "positive"},
                 label2id={"negative": 0, "neutral": 1, "positive": 2}),
    "roberta": dict(model_type="roberta", architectures=["RobertaForSequenceClassification"], vocab_size=99, hidden_size=32,
                    num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, hidden_act="gelu",
                    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=66,
                    type_vocab_size=1, initializer_range=0.02, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                    eos_token_id=2, position_embedding_type="absolute", num_labels=2,
                    id2label={"0": "LABEL_0", "1": "LABEL_1"}, label2id={"LABEL_0": 0, "LABEL_1": 1}),
}


def inputs_for(kind):
    g = torch.Generator().manual_seed(7)
    pad = CONFIGS[kind]["pad_token_id"]
    ids = torch.randint(3, 99, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.int64)
    mask[1, 6:] = 0  # right padding
    mask[2, 4:] = 0
    ids[mask == 0] = pad
    types = torch.zeros(3, 9, dtype=torch.int64)
    if kind == "bert":
        types[0, 5:] = 1  # a sentence pair
        types[1, 3:6] = 1
    labels = torch.tensor([2, 0, 1]) if kind == "bert" else torch.tensor([1, 0, 1])
    return ids, mask, types, labels


# ----------------------------------------------------------------------------- independent implementation
def init_params(cfg):
    g = torch.Generator().manual_seed(42)
    d, i, std = cfg["hidden_size"], cfg["intermediate_size"], cfg["initializer_range"]
    P = {}
    pre = "roberta." if cfg["model_type"] == "roberta" else "bert."

    def lin(name, o, n):
        P[name + ".weight"] = torch.randn(o, n, generator=g) * std
        P[name + ".bias"] = torch.randn(o, generator=g) * 0.02  # non-zero biases so their gradients are tested

    def ln(name):
        P[name + ".weight"] = 1 + torch.randn(d, generator=g) * 0.1
        P[name + ".bias"] = torch.randn(d, generator=g) * 0.1

    P[pre + "embeddings.word_embeddings.weight"] = torch.randn(cfg["vocab_size"], d, generator=g) * std
    P[pre + "embeddings.position_embeddings.weight"] = torch.randn(cfg["max_position_embeddings"], d, generator=g) * std
    P[pre + "embeddings.token_type_embeddings.weight"] = torch.randn(cfg["type_vocab_size"], d, generator=g) * std
    ln(pre + "embeddings.LayerNorm")
    for l in range(cfg["num_hidden_layers"]):
        p = f"{pre}encoder.layer.{l}."
        for n in ("query", "key", "value"):
            lin(p + "attention.self." + n, d, d)
        lin(p + "attention.output.dense", d, d)
        ln(p + "attention.output.LayerNorm")
        lin(p + "intermediate.dense", i, d)
        lin(p + "output.dense", d, i)
        ln(p + "output.LayerNorm")
    if cfg["model_type"] == "bert":
        lin("bert.pooler.dense", d, d)
        lin("classifier", cfg["num_labels"], d)
    else:
        lin("classifier.dense", d, d)
        lin("classifier.out_proj", cfg["num_labels"], d)
    return {k: v.float() for k, v in P.items()}


def independent_forward(cfg, P, ids, mask, types):
    roberta = cfg["model_type"] == "roberta"
    pre = "roberta." if roberta else "bert."
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    eps = cfg["layer_norm_eps"]
    B, T = ids.shape
    if roberta:
        m = ids.ne(cfg["pad_token_id"]).long()
        pos = torch.cumsum(m, 1) * m + cfg["pad_token_id"]
    else:
        pos = torch.arange(T).expand(B, T)
    lin = lambda x, n: F.linear(x, P[n + ".weight"], P[n + ".bias"])
    ln = lambda x, n: F.layer_norm(x, (d,), P[n + ".weight"], P[n + ".bias"], eps)
    h = P[pre + "embeddings.word_embeddings.weight"][ids] + P[pre + "embeddings.token_type_embeddings.weight"][types] \
        + P[pre + "embeddings.position_embeddings.weight"][pos]
    h = ln(h, pre + "embeddings.LayerNorm")
    states = [h]
    ext = (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float32).min
    for l in range(cfg["num_hidden_layers"]):
        p = f"{pre}encoder.layer.{l}."
        split = lambda x: x.view(B, T, H, d // H).transpose(1, 2)
        q, k, v = (split(lin(h, p + "attention.self." + n)) for n in ("query", "key", "value"))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // H) + ext, -1) @ v
        a = a.transpose(1, 2).reshape(B, T, d)
        h = ln(lin(a, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
        f = lin(F.gelu(lin(h, p + "intermediate.dense")), p + "output.dense")
        h = ln(f + h, p + "output.LayerNorm")
        states.append(h)
    if roberta:
        logits = lin(torch.tanh(lin(h[:, 0], "classifier.dense")), "classifier.out_proj")
    else:
        logits = lin(torch.tanh(lin(h[:, 0], "bert.pooler.dense")), "classifier")
    return states, logits


def make(kind):
    cfg = CONFIGS[kind]
    folder = os.path.join(out_dir, kind)
    os.makedirs(folder, exist_ok=True)
    ids, mask, types, labels = inputs_for(kind)
    if independent:
        P32 = init_params(cfg)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        save_file(P32, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        P = {k: v.double().requires_grad_(True) for k, v in P32.items()}
        states, logits = independent_forward(cfg, P, ids, mask, types)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        grads = {k: v.grad for k, v in P.items()}
        produced_by = f"independent PyTorch implementation (torch {torch.__version__})"
    else:
        import transformers
        cls = transformers.BertForSequenceClassification if kind == "bert" else transformers.RobertaForSequenceClassification
        conf_cls = transformers.BertConfig if kind == "bert" else transformers.RobertaConfig
        torch.manual_seed(42)
        model = cls(conf_cls(**{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}))
        with torch.no_grad():  # non-zero biases and norm parameters so their gradients are tested
            for n, p in model.named_parameters():
                if n.endswith("bias") or "LayerNorm" in n:
                    p.add_(torch.randn_like(p) * 0.05)
        model.save_pretrained(folder, safe_serialization=True)
        model = model.double().eval()
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels, output_hidden_states=True)
        out.loss.backward()
        states, logits, loss = out.hidden_states, out.logits, out.loss
        grads = {n: p.grad for n, p in model.named_parameters()}
        produced_by = f"transformers {transformers.__version__} (torch {torch.__version__})"
    ref = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels,
           "last_hidden_state": states[-1].detach(), "logits": logits.detach(), "loss": loss.detach().reshape(())}
    for i, s in enumerate(states):
        ref[f"hidden_states.{i}"] = s.detach()
    for n, g in grads.items():
        ref["grad." + n] = g.detach()
    save_file(ref, os.path.join(folder, "reference.safetensors"), metadata={"produced_by": produced_by})
    print(f"{kind}: {folder} ({produced_by}); loss {loss.item():.6f}")


for kind in CONFIGS:
    make(kind)

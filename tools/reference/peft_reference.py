#!/usr/bin/env python3
"""PEFT LoRA interoperability fixture: a LoRA adapter made by Hugging Face PEFT on the tiny BERT
fixture, and the logits PEFT computes with it.

    python3 tools/reference/peft_reference.py [OUT_DIR] [--check ENGINE_ADAPTER_DIR]

Needs torch, transformers and peft (the GPU host; not the developer machine). OUT_DIR defaults
to tests/Engine.Tests/Fixtures/peft_lora. It holds what PEFT's save_pretrained writes
(adapter_config.json, adapter_model.safetensors) and reference.safetensors with the inputs of
the tiny BERT fixture (input_ids, attention_mask, token_type_ids; I64) and PEFT's logits (F64,
computed in float64 in eval mode). The engine's PeftInteropTests load the adapter onto
Fixtures/bert_tiny/bert and compare logits.

--check DIR goes the other way: DIR is an adapter written by the engine (engine train --method
lora writes one into every checkpoint, or PeftInteropTests writes one to
$TMPDIR/engine-peft-adapter when the fixture exists) holding engine_logits.safetensors; PEFT
loads the adapter onto the same base and the script prints the largest logit difference
(exit 1 above 1e-4).

The LoRA settings: r=4, lora_alpha=8, lora_dropout=0, target_modules ["query", "value"],
task_type SEQ_CLS. lora_B is drawn N(0, 0.1) instead of PEFT's zeros so the adapter changes
the logits.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from st_io import load_file, save_file  # noqa: E402

from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import BertForSequenceClassification  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BASE = os.path.join(ROOT, "tests", "Engine.Tests", "Fixtures", "bert_tiny", "bert")
args = [a for a in sys.argv[1:] if not a.startswith("--")]
out_dir = args[0] if args and "--check" not in sys.argv[1:2] else os.path.join(ROOT, "tests", "Engine.Tests", "Fixtures", "peft_lora")


def inputs():
    ref = load_file(os.path.join(BASE, "reference.safetensors"))
    return {k: torch.as_tensor(ref[k]).long() for k in ("input_ids", "attention_mask", "token_type_ids")}


def logits_of(model, x):
    model = model.double().eval()
    with torch.no_grad():
        return model(**x).logits


if "--check" in sys.argv:
    engine_dir = sys.argv[sys.argv.index("--check") + 1]
    base = BertForSequenceClassification.from_pretrained(BASE)
    model = PeftModel.from_pretrained(base, engine_dir)
    expected = load_file(os.path.join(engine_dir, "engine_logits.safetensors"))
    x = {k: torch.as_tensor(expected[k]).long() for k in ("input_ids", "attention_mask", "token_type_ids")}
    diff = (logits_of(model, x) - torch.as_tensor(expected["logits"]).double()).abs().max().item()
    print(f"PEFT vs engine logits: max |difference| {diff:.3g}")
    sys.exit(0 if diff < 1e-4 else 1)

torch.manual_seed(0)
base = BertForSequenceClassification.from_pretrained(BASE)
config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"])
model = get_peft_model(base, config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.normal_(0.0, 0.1)
os.makedirs(out_dir, exist_ok=True)
model.save_pretrained(out_dir, safe_serialization=True)
x = inputs()
logits = logits_of(model, x)
save_file({**x, "logits": logits}, os.path.join(out_dir, "reference.safetensors"),
          metadata={"produced_by": "peft"})
print(f"wrote {out_dir}: adapter_config.json, adapter_model.safetensors, reference.safetensors")

#!/usr/bin/env bash
# Regenerates the reference fixtures with Hugging Face's own code, on a machine whose python3 has
# torch, transformers, peft and safetensors (the GPU host), from a copy of the repository:
#
#   bash tools/gpu-fixtures.sh            # writes into tests/Engine.Tests/Fixtures of this copy,
#                                         # and packs what it wrote into $OUT/fixtures.tar.gz
#
# Then, on the developer machine: tar -C tests/Engine.Tests/Fixtures -xzf fixtures.tar.gz, run the
# tests, commit. The tokenizer fixture needs the shared tokenizer files, which do not travel with
# the repository: copy ../shared/tokenizers to .carry/tokenizers (git-ignored) and carry .carry.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/engine-out}"
mkdir -p "$OUT"
fx=tests/Engine.Tests/Fixtures
python3 -c "import torch, transformers, peft, safetensors; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" \
  || { echo "needs torch, transformers, peft and safetensors"; exit 2; }

declare -A rc
python3 tools/reference/bert_reference.py "$fx/bert_tiny";                 rc[bert]=$?
python3 tools/reference/llama_reference.py "$fx/llama_tiny";               rc[llama]=$?
python3 tools/reference/make_safetensors_fixture.py "$fx/safetensors";     rc[safetensors]=$?
python3 tools/reference/peft_reference.py "$fx/peft_lora";                 rc[peft]=$?
if [ -f .carry/tokenizers/bert-base-uncased/vocab.txt ]; then
  python3 tools/reference/tokenizer_reference.py --bert-vocab .carry/tokenizers/bert-base-uncased/vocab.txt \
    --llama-model .carry/tokenizers/llama2/tokenizer.model --out "$fx/tokenizer_reference.json"; rc[tokenizers]=$?
else
  rc[tokenizers]="skipped (no .carry/tokenizers)"
fi
# The other direction of the PEFT interop: the engine loads PEFT's adapter (the test), writes its
# own with its logits to $TMPDIR/engine-peft-adapter, and PEFT loads that one (--check).
rc[peft_check]="skipped (no /tmp/engine bundle or no PEFT fixture)"
if [ -x /tmp/engine/Engine.Tests ] && [ -f "$fx/peft_lora/adapter_config.json" ]; then
  mkdir -p /tmp/engine/Fixtures && rm -rf /tmp/engine/Fixtures/peft_lora && cp -r "$fx/peft_lora" /tmp/engine/Fixtures/
  /tmp/engine/Engine.Tests --filter "FullyQualifiedName~PeftInterop" > "$OUT/peft-interop-tests.log" 2>&1
  rc[peft_engine_loads_peft]=$?
  python3 tools/reference/peft_reference.py --check "${TMPDIR:-/tmp}/engine-peft-adapter" > "$OUT/peft-check.log" 2>&1
  rc[peft_check]="$? ($(tail -n 1 "$OUT/peft-check.log"))"
fi
tar -C "$fx" -czf "$OUT/fixtures.tar.gz" bert_tiny llama_tiny safetensors peft_lora tokenizer_reference.json 2>/dev/null
echo
echo "| fixture     | exit |"
echo "|-------------|------|"
for k in "${!rc[@]}"; do echo "| $k | ${rc[$k]} |"; done
ls -la "$OUT/fixtures.tar.gz"

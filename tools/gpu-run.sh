#!/usr/bin/env bash
# Runs on the GPU host, from the unpacked bundle (tar -C /tmp -xJf engine.tar.xz; /tmp/engine/gpu-run.sh):
# the whole test suite (results under $OUT), `engine kernels compile`, `engine gradcheck --device cuda`,
# `engine demo --device cuda`, and a training-step benchmark side by side with PyTorch on a
# BERT-base-shaped random folder (ENGINE_VOCAB: a vocab.txt, e.g. .carry/tokenizers/bert-base-uncased/vocab.txt;
# the demo's small vocabulary otherwise), then a short table. $OUT defaults to /tmp/engine-out.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-/tmp/engine-out}"
mkdir -p "$OUT"
export ENGINE_KERNEL_CACHE="$OUT/kernel-cache"
# Where python3's pip-installed CUDA libraries are (torch's nvidia-* wheels): probed anyway, but
# asking the interpreter that has them is the surest way (an ENGINE_CUDA_LIB_DIR given stays).
if [ -z "${ENGINE_CUDA_LIB_DIR:-}" ]; then
  nvdir=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
  for lib in cuda_nvrtc/lib cu13/lib; do [ -d "$nvdir/$lib" ] && export ENGINE_CUDA_LIB_DIR="$nvdir/$lib" && break; done
fi
echo "ENGINE_CUDA_LIB_DIR=${ENGINE_CUDA_LIB_DIR:-unset}" > "$OUT/env.txt"
cd "$here"

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi unavailable"; } | tee "$OUT/gpu.txt"

./Engine.Tests --results-directory "$OUT/test-results" > "$OUT/tests.log" 2>&1
tests_rc=$?
./engine kernels compile > "$OUT/kernels.log" 2>&1
kernels_rc=$?
./engine gradcheck --device cuda > "$OUT/gradcheck-cuda.log" 2>&1
gradcheck_rc=$?
./engine demo --device cuda --out "$OUT/demo-cuda" > "$OUT/demo-cuda.log" 2>&1
demo_rc=$?
vocab="${ENGINE_VOCAB:-$OUT/demo-cuda/model-init/vocab.txt}"
bench_rc=skipped
if [ -f "$vocab" ] && python3 -c "import torch, transformers" 2>/dev/null; then
  ./engine init --vocab "$vocab" --layers 12 --hidden 768 --heads 12 --out /tmp/bert-base-random > /dev/null 2>&1
  python3 "$here/step_vs_torch.py" ./engine /tmp/bert-base-random --device cuda --batch 32 --len 128 --iters 10 > "$OUT/bench-step-cuda.log" 2>&1
  bench_rc=$?
  python3 "$here/step_vs_torch.py" ./engine /tmp/bert-base-random --device cuda --batch 32 --len 128 --iters 10 --dtype bf16 > "$OUT/bench-step-cuda-bf16.log" 2>&1
  ./engine bench step --model /tmp/bert-base-random --device cuda --batch 32 --len 128 --iters 3 --profile > "$OUT/profile-cuda.log" 2>&1
fi

count() { grep -E "^\s*$1:\s*[0-9]+" "$OUT/tests.log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}'; }
echo
echo "| step                           | exit | summary |"
echo "|--------------------------------|------|---------|"
echo "| tests (Engine.Tests)           | $tests_rc | $(count succeeded) passed, $(count failed) failed, $(count skipped) skipped |"
echo "| engine kernels compile         | $kernels_rc | $(tail -n 1 "$OUT/kernels.log") |"
echo "| engine gradcheck --device cuda | $gradcheck_rc | $(tail -n 1 "$OUT/gradcheck-cuda.log") |"
echo "| engine demo --device cuda      | $demo_rc | $(grep -E '^(held-out|done)' "$OUT/demo-cuda.log" | tr '\n' ' ') |"
echo
echo "training step, BERT-base shape, batch 32 x 128, float32 (exit $bench_rc):"
cat "$OUT/bench-step-cuda.log" 2>/dev/null | tail -n 9
cat "$OUT/bench-step-cuda-bf16.log" 2>/dev/null | tail -n 9
echo "per-op profile on the GPU (top 8):"; sed -n '/^op /,$p' "$OUT/profile-cuda.log" 2>/dev/null | head -n 9
echo
echo "skipped tests (reason):"; grep -A1 "^skipped" "$OUT/tests.log" | head -40
echo "failed tests:"; grep -A6 "^failed" "$OUT/tests.log" | head -80
grep -E "FAIL" "$OUT/gradcheck-cuda.log" || true
[ "$tests_rc" -eq 0 ] && [ "$kernels_rc" -eq 0 ] && [ "$gradcheck_rc" -eq 0 ]

#!/usr/bin/env bash
# Runs on the GPU host, from the unpacked bundle (tar -C /tmp -xJf engine.tar.xz; /tmp/engine/gpu-run.sh):
# the whole test suite (results under $OUT), `engine kernels compile`, `engine gradcheck --device cuda`,
# then a short table. $OUT defaults to /tmp/engine-out.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-/tmp/engine-out}"
mkdir -p "$OUT"
export ENGINE_KERNEL_CACHE="$OUT/kernel-cache"
cd "$here"

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi unavailable"; } | tee "$OUT/gpu.txt"

./Engine.Tests --results-directory "$OUT/test-results" > "$OUT/tests.log" 2>&1
tests_rc=$?
./engine kernels compile > "$OUT/kernels.log" 2>&1
kernels_rc=$?
./engine gradcheck --device cuda > "$OUT/gradcheck-cuda.log" 2>&1
gradcheck_rc=$?

count() { grep -E "^\s*$1:\s*[0-9]+" "$OUT/tests.log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}'; }
echo
echo "| step                           | exit | summary |"
echo "|--------------------------------|------|---------|"
echo "| tests (Engine.Tests)           | $tests_rc | $(count succeeded) passed, $(count failed) failed, $(count skipped) skipped |"
echo "| engine kernels compile         | $kernels_rc | $(tail -n 1 "$OUT/kernels.log") |"
echo "| engine gradcheck --device cuda | $gradcheck_rc | $(tail -n 1 "$OUT/gradcheck-cuda.log") |"
echo
echo "skipped tests (reason):"; grep -A1 "^skipped" "$OUT/tests.log" | head -40
echo "failed tests:"; grep -A6 "^failed" "$OUT/tests.log" | head -80
grep -E "FAIL" "$OUT/gradcheck-cuda.log" || true
[ "$tests_rc" -eq 0 ] && [ "$kernels_rc" -eq 0 ] && [ "$gradcheck_rc" -eq 0 ]

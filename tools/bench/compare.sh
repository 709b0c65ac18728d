#!/usr/bin/env bash
# The engine beside numpy/PyTorch on OpenBLAS: GEMM GFLOP/s, each op, the whole BERT training
# step (full and LoRA) with peak RSS, engine and reference alternating (tools/bench/compare.py).
# Installs nothing; refuses to run if numpy/PyTorch do not use OpenBLAS (Debian:
# apt-get install python3-torch python3-numpy libopenblas0-pthread [python3-threadpoolctl]).
#
#   dotnet build -c Release tools/Engine.Cli && tools/bench/compare.sh [--rounds 3] [--iters 10] [--only gemm,ops,step]
#
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (set on some machines because older OpenBLAS builds
# fail on their processors) make a current OpenBLAS pick a slower kernel: they are unset for
# this command alone; the kernel it then picks is printed. OpenBLAS 0.3.21 does not know every
# AVX-512 processor (Emerald Rapids, model 207, falls back to its SSE3 `Prescott` kernel at
# ≈ 15 GFLOP/s): where the CPU has AVX-512 its AVX-512 kernel is named (`Cooperlake`, whose sgemm
# is SkylakeX's), or COMPARE_OPENBLAS_CORETYPE picks one.
set -euo pipefail
cd "$(dirname "$0")/../.."
ENGINE=${ENGINE:-tools/Engine.Cli/bin/Release/net10.0/engine}
[[ -x $ENGINE ]] || { echo "compare.sh: no engine at $ENGINE (dotnet build -c Release tools/Engine.Cli)" >&2; exit 2; }
[[ -x /usr/bin/python3 ]] || { echo "compare.sh: needs Debian's /usr/bin/python3 with python3-torch" >&2; exit 2; }
core=${COMPARE_OPENBLAS_CORETYPE:-}
[[ -z $core ]] && grep -qw avx512f /proc/cpuinfo && core=Cooperlake
if [[ -n $core ]]; then exec env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE="$core" /usr/bin/python3 tools/bench/compare.py "$ENGINE" "$@"; fi
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 tools/bench/compare.py "$ENGINE" "$@"

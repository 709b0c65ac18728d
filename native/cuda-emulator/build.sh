#!/usr/bin/env bash
# Builds the CUDA emulator: every kernel file compiled a second time as C++ (g++, with cuda_emu.h
# force-included) into one shared library with the scheduler (runtime.cpp).
#
#   build.sh OUTPUT.so KERNEL.cu... [-- EXTRA G++ FLAGS]
#
# Each kernel file becomes one translation unit: the file itself (#included by its absolute path, so
# a debugger shows the .cu source) followed by one EMU_KERNEL(name) registration per extern "C"
# __global__ function it declares. Flags: $CUDA_EMULATOR_FLAGS (default -O2 -g); for stepping through
# a kernel in gdb use CUDA_EMULATOR_FLAGS="-O0 -g". The library is written atomically.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1; shift
sources=(); extra=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; extra=("$@"); break; fi
  sources+=("$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"); shift
done
# -fno-ipa-reference(-addressable): the __shared__ statics are written by other fibers during a
# __syncthreads() or warp call, and read though never written in their file (poisoned memory):
# g++ must neither keep them in registers across calls nor fold them to their zero initialiser.
flags=(-std=c++17 ${CUDA_EMULATOR_FLAGS:--O2 -g} -fno-ipa-reference -fno-ipa-reference-addressable
       -fPIC -fvisibility=hidden -fno-gnu-unique -ffp-contract=off -fno-exceptions -fno-rtti
       -Wall -Wno-unused-function -Wno-unused-variable -Werror -include "$here/cuda_emu.h" "${extra[@]}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pids=()
compile() { g++ "${flags[@]}" -I"$(dirname "$1")" -c "$1" -o "$2"; }
for cu in "${sources[@]}"; do
  name=$(basename "$cu" .cu)
  {
    echo "#include \"$cu\""
    sed -nE 's/^[[:space:]]*extern[[:space:]]+"C"[[:space:]]+__global__[[:space:]]+void[[:space:]]+([A-Za-z0-9_]+)[[:space:]]*\(.*/EMU_KERNEL(\1)/p' "$cu"
  } > "$work/$name.cpp"
  compile "$work/$name.cpp" "$work/kernel_$name.o" & pids+=($!)
done
compile "$here/runtime.cpp" "$work/runtime.o" & pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ $status -eq 0 ] || { echo "build.sh: the CUDA emulator did not compile" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
g++ -shared -Wl,-Bsymbolic -Wl,-T,"$here/shared.ld" -o "$out.tmp.$$" "$work"/*.o
mv -f "$out.tmp.$$" "$out"

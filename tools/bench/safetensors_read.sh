#!/usr/bin/env bash
# Read speed of the memory-mapped safetensors reader on a ~1 GiB file, against `cat FILE > /dev/null`.
#
#   tools/bench/safetensors_read.sh [DTYPE]     DTYPE: F32 (default) or BF16
#
# Writes /tmp/engine-bench-1g.safetensors (16 tensors of 4096 × 4096 F32, or 16 of 4096 × 8192
# BF16) with Python's standard library (no safetensors package needed), times:
#   1. cat FILE > /dev/null                        (the page-cache / disk read floor)
#   2. engine inspect FILE --read [--mmap]         (every tensor into a new engine tensor, raw dtype;
#                                                   positional reads, or copied out of a mapping)
#   3. engine inspect FILE --read --dtype f32      (BF16 only: with the exact conversion to F32)
# and deletes the file. The file was just written, so it is in the page cache and both numbers
# measure memory bandwidth rather than the disk; caches are not dropped (that needs root).
set -euo pipefail
cd "$(dirname "$0")/../.."
DTYPE="${1:-F32}"
FILE=/tmp/engine-bench-1g.safetensors
trap 'rm -f "$FILE"' EXIT

dotnet build tools/Engine.Cli -c Release -v q -nologo >/dev/null
ENGINE="dotnet tools/Engine.Cli/bin/Release/net10.0/engine.dll"

python3 - "$FILE" "$DTYPE" <<'PY'
import json, os, struct, sys
path, dtype = sys.argv[1], sys.argv[2]
rows, cols = (4096, 4096) if dtype == "F32" else (4096, 8192)
size = rows * cols * (4 if dtype == "F32" else 2)
header, offset = {}, 0
for i in range(16):
    header[f"layer.{i:02d}.weight"] = {"dtype": dtype, "shape": [rows, cols], "data_offsets": [offset, offset + size]}
    offset += size
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * ((8 - len(text) % 8) % 8)
chunk = os.urandom(1 << 24)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for _ in range(offset // len(chunk)):
        f.write(chunk)
PY
ls -l "$FILE"

echo "== cat > /dev/null (3 runs)"
for i in 1 2 3; do /usr/bin/time -f "%e s" cat "$FILE" > /dev/null; done
for i in 1 2 3; do
  echo "== engine inspect --read (raw, positional reads), run $i"
  $ENGINE inspect "$FILE" --read | tail -1
  echo "== engine inspect --read --mmap (raw, copied out of a memory mapping), run $i"
  $ENGINE inspect "$FILE" --read --mmap | tail -1
done
if [ "$DTYPE" = "BF16" ]; then
  echo "== engine inspect --read --dtype f32"
  $ENGINE inspect "$FILE" --read --dtype f32 | tail -1
fi

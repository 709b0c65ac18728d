#!/usr/bin/env bash
# Publishes a self-contained bundle for a Linux x64 GPU host without .NET: the test runner
# (tests/Engine.Tests, a Microsoft.Testing.Platform executable) and the CLI (tools/Engine.Cli),
# into .bundle/engine, packed as .bundle/engine.tar.xz. Unpack it under /tmp on the GPU host and
# run tools/gpu-run.sh (copied into the bundle) there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.bundle/engine
rm -rf "$out" .bundle/engine.tar.xz
mkdir -p "$out"
for project in tests/Engine.Tests tools/Engine.Cli; do
  dotnet publish "$project" -c Release -r linux-x64 --self-contained -o "$out" -p:DebugType=none -nologo -v quiet
done
cp tools/gpu-run.sh "$out/gpu-run.sh"
cp tools/bench/step_vs_torch.py "$out/step_vs_torch.py"
chmod +x "$out/gpu-run.sh" "$out/engine" "$out/Engine.Tests"
tar -C .bundle -cJf .bundle/engine.tar.xz engine
size=$(stat -c %s .bundle/engine.tar.xz)
echo ".bundle/engine.tar.xz: $((size / 1024 / 1024)) MiB ($size bytes)"
if [ "$size" -gt $((64 * 1024 * 1024)) ]; then echo "bundle is larger than 64 MiB" >&2; exit 1; fi

#!/usr/bin/env python3
"""Safetensors fixtures written by the real Python `safetensors` package.

Run on a machine with torch (>= 2.1, for the float8 types) and safetensors:

    python3 tools/reference/make_safetensors_fixture.py tests/Engine.Tests/Fixtures/safetensors

It writes:
  python_all_dtypes.safetensors   one small tensor of every dtype the engine reads, with
                                  names chosen so that dtype order and name order disagree,
                                  and metadata {"format": "pt"} (one key: with more, Python's
                                  key order is a hash-map order and not reproducible)
  python_no_metadata.safetensors  two tensors, no metadata
  python_empty.safetensors        no tensors, no metadata

Every value is v(i) = (i - 6) / 4 for i = 0..11, laid out as shape [3, 4] and cast to the
tensor's dtype (integers: i - 6; U8: i; BOOL: i % 3 == 0). All are exact in every float type.
The C# test (SafeTensorsPythonFixtureTests) reads each file, checks every value against this
formula, then rewrites the tensors with the engine's writer and requires the same bytes.
"""
import os
import sys

import torch
from safetensors.torch import save_file


def values(dtype):
    i = torch.arange(12, dtype=torch.float64)
    if dtype == torch.bool:
        return (torch.arange(12) % 3 == 0).reshape(3, 4)
    if dtype == torch.uint8:
        return torch.arange(12, dtype=torch.uint8).reshape(3, 4)
    if not dtype.is_floating_point:
        return (torch.arange(12) - 6).to(dtype).reshape(3, 4)
    return ((i - 6) / 4).to(dtype).reshape(3, 4)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    dtypes = {
        "f64": torch.float64, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
        "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8,
        "u8": torch.uint8, "bool": torch.bool,
        "f8_e4m3": torch.float8_e4m3fn, "f8_e5m2": torch.float8_e5m2,
    }
    # Prefixes run against dtype order so the file shows the writer's sort: dtype first, then name.
    tensors = {f"{chr(ord('a') + k)}.{name}": values(dt) for k, (name, dt) in enumerate(reversed(list(dtypes.items())))}
    tensors["z.scalar"] = torch.tensor(2.5, dtype=torch.float32)
    tensors["y.empty"] = torch.zeros((0, 3), dtype=torch.float32)
    save_file(tensors, os.path.join(out_dir, "python_all_dtypes.safetensors"), metadata={"format": "pt"})
    save_file({"b": values(torch.float32), "a": values(torch.bfloat16)}, os.path.join(out_dir, "python_no_metadata.safetensors"))
    save_file({}, os.path.join(out_dir, "python_empty.safetensors"))
    print("wrote fixtures to", out_dir)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/Engine.Tests/Fixtures/safetensors")

"""Minimal safetensors writer/reader for reference scripts on machines without the
`safetensors` package (Debian's python3-torch has none). Same layout as safetensors'
save_file: u64 little-endian header length, JSON header (names sorted, __metadata__ first),
padded with spaces to a multiple of 8, then the tensors' bytes in header order."""
import json
import struct

import torch

_DT = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
       torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
_TD = {v: k for k, v in _DT.items()}


def save_file(tensors, path, metadata=None):
    try:
        from safetensors.torch import save_file as real
        return real({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata)
    except ImportError:
        pass
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype == torch.bfloat16:
            b = t.view(torch.int16).numpy().tobytes()
        else:
            b = t.numpy().tobytes()  # little-endian on the machines we run on
        header[name] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_file(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b0, b1 = e["data_offsets"]
        dt = _TD[e["dtype"]]
        raw = bytearray(data[b0:b1])
        t = torch.frombuffer(raw, dtype=dt if dt != torch.bool else torch.uint8) if raw else torch.empty(0, dtype=dt)
        out[name] = t.reshape(e["shape"]).clone()
    return out

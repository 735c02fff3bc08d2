"""safetensors read by hand for the torch reference checks, so that nothing of ringtrain's own reader is trusted:
8-byte little-endian header length, JSON header, raw little-endian bytes (float32 tensors only)."""
import json
import struct

import torch


def read_safetensors(path):
    """Returns ({name: float32 tensor}, the header's __metadata__ or {})."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    body = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name}: dtype {info['dtype']} (the torch reference reads F32 only)")
        start, end = info["data_offsets"]
        values = struct.unpack(f"<{(end - start) // 4}f", body[start:end])
        out[name] = torch.tensor(values, dtype=torch.float32).reshape(info["shape"])
    return out, header.get("__metadata__", {})

"""Dense baselines: `torch.save`, safetensors, zstd-19 of safetensors, byte-grouped + zstd-19."""

from __future__ import annotations

import io
import json
import struct

import torch
import zstandard
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from fzpack.baselines import Artifact, StateDict, Subject
from fzpack.codecs.values import group_bytes, ungroup_bytes, zstd_decompress_exact

# safetensors dtype tags -> bytes per element (what the byte grouping transposes by)
_ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8}


def safetensors_bytes(sd: StateDict) -> bytes:
    """safetensors of the state dict (clones: shared or strided tensors are saved as plain copies)."""
    return st_save({k: v.detach().cpu().contiguous().clone() for k, v in sd.items()})


def _torch_load(data: bytes) -> StateDict:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def torch_save_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _zstd19(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=19, write_content_size=True).compress(data)


def _unzstd(data: bytes) -> bytes:
    return zstd_decompress_exact(data, zstandard.frame_content_size(data))


def _split_safetensors(st: bytes) -> tuple[bytes, dict, bytes]:
    n = struct.unpack("<Q", st[:8])[0]
    return st[: 8 + n], json.loads(st[8 : 8 + n]), st[8 + n :]


def bytegroup_bytes(st: bytes) -> bytes:
    """The safetensors header as is, then one zstd-19 frame of its data section with each
    tensor's bytes byte-grouped by its element size (fzpack's codec 2 transform)."""
    head, meta, data = _split_safetensors(st)
    parts = []
    for name, info in sorted(((k, v) for k, v in meta.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = info["data_offsets"]
        size = _ST_ITEMSIZE[info["dtype"]]
        parts.append(group_bytes(data[a:b], size) if size > 1 and b > a else data[a:b])
    return head + _zstd19(b"".join(parts))


def bytegroup_decode(blob: bytes) -> StateDict:
    n = struct.unpack("<Q", blob[:8])[0]
    head, meta = blob[: 8 + n], json.loads(blob[8 : 8 + n])
    grouped = _unzstd(blob[8 + n :])
    parts = []
    for name, info in sorted(((k, v) for k, v in meta.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = info["data_offsets"]
        size = _ST_ITEMSIZE[info["dtype"]]
        parts.append(ungroup_bytes(grouped[a:b], size) if size > 1 and b > a else grouped[a:b])
    return st_load(head + b"".join(parts))


def dense_artifacts(subject: Subject) -> list[Artifact]:
    """torch.save, safetensors, safetensors + zstd-19, byte-grouped + zstd-19 of the state dict."""
    sd = subject.state_dict
    st = safetensors_bytes(sd)
    return [
        Artifact("torch-save", "dense torch.save (state dict)", "dense.pt", torch_save_bytes(sd), _torch_load),
        Artifact("safetensors", "safetensors", "dense.safetensors", st, st_load),
        Artifact("safetensors-zstd", "safetensors + zstd-19", "dense.safetensors.zst", _zstd19(st), lambda b: st_load(_unzstd(b))),
        Artifact("bytegroup-zstd", "byte-grouped + zstd-19", "dense.bytegroup.zst", bytegroup_bytes(st), bytegroup_decode,
                 note="byte-grouped: safetensors header, then one zstd-19 frame of the data with each tensor's bytes "
                      "grouped by element size"),
    ]

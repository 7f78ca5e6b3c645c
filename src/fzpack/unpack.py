"""`.fzp` bytes -> checkpoint object (the reader side of formats/fzpack-v1.md).

Order of work: the whole file is checked (checksums, header consistency, size budget) before
any stream is decompressed; each stream is then decoded with its exact declared size; frozen
tensors are regenerated on the requested device and the trained values written into them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zstandard

from fzpack.checkpoint import FrozenTensor
from fzpack.codecs.mask import decode_mask
from fzpack.codecs.lossy import payload_dtype
from fzpack.codecs.values import LOSSY_CODECS, decode_stream, zstd_decompress_exact
from fzpack.container.bytes_io import decode_varints
from fzpack.container.file import read_container
from fzpack.container.layout import (
    ALIAS, FLAG_DENSE, FLAG_MASK_FROM_SEED, FLAG_SCALED, FROZEN, MAX_HEADER_BYTES, ROLE_INDEX, ROLE_MASKS, ROLE_NAMES, ROLE_VALUES, Header,
    TensorEntry, itemsize,
)
from fzpack.container.tree import TreeDecoder
from fzpack.errors import CodecError, FormatError
from fzpack.generator import InitSpec, generate, random_mask
from fzpack.pack import TREE_JSON, TREE_ZSTD, TREE_ZSTD_DICT
from fzpack.tensor_bits import from_bytes

DEFAULT_MAX_BYTES = 16 << 30


@dataclass
class Unpacked:
    """Decoded tensors (table order), masks of frozen tensors, and the rebuilt object tree."""

    header: Header
    tensors: list[torch.Tensor]
    masks: dict[int, torch.Tensor]
    obj: Any


def restored_bytes(h: Header) -> int:
    return sum(t.numel * itemsize(t.dtype) for t in h.tensors if t.kind != ALIAS)


def unpack(data: bytes | memoryview, *, device: str | torch.device = "cpu", max_bytes: int = DEFAULT_MAX_BYTES,
           progress: Callable[[int], None] | None = None) -> Unpacked:
    """Decode a whole `.fzp` file.

    Args:
        data: the file's bytes.
        device: where tensors are built; frozen weights are regenerated there, bit-identically.
        max_bytes: refuse files whose tensors would take more memory than this (a tiny file can
            describe huge frozen tensors).
        progress: called with 1 after each tensor.
    """
    header, payloads = read_container(data)
    need = restored_bytes(header)
    if need > max_bytes:
        raise FormatError(f"restoring needs {need:,} bytes of tensors, over the limit of {max_bytes:,}; raise max_bytes if you trust this file")
    for b in header.banks:
        if b[1] * 4 > max_bytes:
            raise FormatError(f"bank {b[0]!r} of length {b[1]:,} exceeds the memory limit")
    _check_lossy(header, payloads)
    raw = [_decode(i, s, payloads[i]) if s.role != ROLE_MASKS else bytes(payloads[i]) for i, s in enumerate(header.streams)]
    cursors = [0] * len(raw)
    banks = dict(header.banks)
    tensors: list[torch.Tensor] = []
    masks: dict[int, torch.Tensor] = {}
    for i, t in enumerate(header.tensors):
        if t.kind == ALIAS:
            tensors.append(tensors[t.target])
        elif t.kind == FROZEN:
            out, mask = _frozen(header, t, raw, cursors, banks, device)
            tensors.append(out)
            masks[i] = mask
        else:
            tensors.append(_take_values(t, raw, cursors, t.numel).to(device))
        if progress:
            progress(1)
    for i, s in enumerate(header.streams):
        if s.role == ROLE_INDEX and cursors[i] != len(raw[i]):
            raise FormatError(f"index stream {i} has {len(raw[i]) - cursors[i]} unused bytes")
    obj = _tree(header, tensors, masks)
    return Unpacked(header=header, tensors=tensors, masks=masks, obj=obj)


def _decode(i: int, s: Any, payload: memoryview) -> bytes:
    try:
        return decode_stream(s.codec, bytes(payload), s.raw_length, s.itemsize)
    except CodecError as e:
        raise FormatError(f"stream {i}: {e}") from e


def _check_lossy(h: Header, payloads: list[memoryview]) -> None:
    """A lossy codec may code only a values stream, and only for tensors of the dtype its payload names."""
    for i, s in enumerate(h.streams):
        if s.codec not in LOSSY_CODECS or s.role == ROLE_MASKS:
            continue
        if s.role != ROLE_VALUES:
            raise FormatError(f"stream {i}: lossy codec {s.codec} on a {ROLE_NAMES[s.role]} stream")
        try:
            dtype = payload_dtype(s.codec, bytes(payloads[i][:1]), s.itemsize)
        except CodecError as e:
            raise FormatError(f"stream {i}: {e}") from e
        for t in h.tensors:
            if t.kind != ALIAS and t.stream == i and t.dtype != dtype:
                raise FormatError(f"stream {i} decodes to {dtype} but tensor {t.name!r} is {t.dtype}")


def _take(raw: list[bytes], cursors: list[int], s: int, n: int) -> bytes:
    start = cursors[s]
    cursors[s] += n
    return raw[s][start : start + n]  # lengths were validated against the header already


def _take_values(t: TensorEntry, raw: list[bytes], cursors: list[int], count: int, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    data = _take(raw, cursors, t.stream, count * itemsize(t.dtype))
    if t.dtype == torch.bool and data and max(data) > 1:
        raise FormatError(f"tensor {t.name!r}: bool values other than 0 and 1")
    return from_bytes(data, t.dtype, shape if shape is not None else t.shape)


def _spec(h: Header, t: TensorEntry) -> InitSpec:
    init = t.init
    assert init is not None
    p = list(init.params) + [0.0] * (2 - len(init.params))
    bank = h.banks[init.bank][0] if init.dist == "bank" else ""
    try:
        return InitSpec(dist=init.dist, p0=p[0], p1=p[1], bank=bank, offset=init.offset)
    except Exception as e:  # the generator validates its params with its own error types
        raise FormatError(f"tensor {t.name!r}: invalid init parameters: {e}") from e


def _frozen(h: Header, t: TensorEntry, raw: list[bytes], cursors: list[int], banks: dict[str, int], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    spec = _spec(h, t)
    regen32 = generate(spec, h.seed, t.name, t.shape, dtype=torch.float32, device=device, banks=banks)
    if t.flags & FLAG_MASK_FROM_SEED:
        mask = random_mask(h.seed, t.name, t.shape, t.k, device=device)
    else:
        payload = _take(raw, cursors, t.mask_stream, t.mask_length)
        context = regen32.abs().cpu().numpy() if spec.dist in ("normal", "uniform", "bank") else None
        try:
            mask_np = decode_mask(payload, t.shape, t.k, context)
        except CodecError as e:
            raise FormatError(f"tensor {t.name!r}: mask: {e}") from e
        mask = torch.from_numpy(np.ascontiguousarray(mask_np, dtype=np.bool_)).reshape(t.shape).to(device)
    if t.flags & FLAG_DENSE:
        return _take_values(t, raw, cursors, t.numel).to(device), mask
    scale = t.init.scale if t.flags & FLAG_SCALED else None
    out = (regen32 if scale is None else regen32 * scale).to(t.dtype)
    values = _take_values(t, raw, cursors, t.k + t.n_exceptions, (t.k + t.n_exceptions,)).to(device)
    flat = out.view(-1)
    flat[mask.reshape(-1)] = values[: t.k]
    if t.n_exceptions:
        pos = _exception_positions(h, t, raw, cursors, mask)
        flat[pos.to(device)] = values[t.k :]
    return out, mask


def _exception_positions(h: Header, t: TensorEntry, raw: list[bytes], cursors: list[int], mask: torch.Tensor) -> torch.Tensor:
    n = t.numel
    deltas, cursors[t.index_stream] = decode_varints(raw[t.index_stream], cursors[t.index_stream], t.n_exceptions, n,
                                                     f"index stream {t.index_stream}")
    pos = np.cumsum(deltas + 1) - 1
    if pos[-1] >= n:
        raise FormatError(f"tensor {t.name!r}: exception position {int(pos[-1])} outside its {n} elements")
    p = torch.from_numpy(pos)
    if mask.reshape(-1).cpu()[p].any():
        raise FormatError(f"tensor {t.name!r}: an exception position is a trained entry")
    return p


def _tree_json(h: Header) -> bytes:
    if h.tree_codec == TREE_JSON:
        return h.tree
    if h.tree_codec not in (TREE_ZSTD, TREE_ZSTD_DICT):
        raise FormatError(f"unknown tree codec {h.tree_codec}")
    try:
        size = zstandard.frame_content_size(h.tree)
        if size < 0 or size > MAX_HEADER_BYTES:
            raise CodecError(f"frame declares {size} bytes (limit {MAX_HEADER_BYTES})")
        return zstd_decompress_exact(h.tree, size, tree_dict=h.tree_codec == TREE_ZSTD_DICT)
    except (CodecError, zstandard.ZstdError) as e:
        raise FormatError(f"tree: {e}") from e


def _tree(h: Header, tensors: list[torch.Tensor], masks: dict[int, torch.Tensor]) -> Any:
    tree = _tree_json(h)

    def tensor(i: int) -> torch.Tensor:
        if i >= len(tensors):
            raise FormatError(f"tree refers to tensor {i}, the table has {len(tensors)}")
        return tensors[i]

    def fzt(order: Any) -> dict:
        if not isinstance(order, list) or len(set(map(str, order))) != len(order):
            raise FormatError("tree: '$fzt' must list distinct tensor indices")
        out = {}
        for i in order:
            if not isinstance(i, int) or i not in masks:
                raise FormatError(f"tree: '$fzt' names {i!r}, which is not a frozen tensor")
            t = h.tensors[i]
            ft = FrozenTensor(spec=_spec(h, t), mask=masks[i].cpu(), scheme=h.schemes[t.init.scheme] if h.schemes else "",
                              scale=t.init.scale if t.flags & FLAG_SCALED else None)
            out[t.name] = {"init": ft.init_dict(), "mask": ft.mask}
        return out

    return TreeDecoder(tensor, lambda i: h.tensors[i].name if i < len(h.tensors) else "", {"$fzt": fzt}).decode(tree)

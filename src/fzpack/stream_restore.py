"""Restore a `.fzp` file to a `.pt` or safetensors file one tensor at a time (``fzpack restore -o``).

A restore into memory must hold every tensor; a restore to a file need not. The output's
structure is built first from the header alone, with *placeholder* tensors (FakeTensors: shape
and dtype, no memory), and each tensor is decoded only when its bytes are written, then dropped:
the process holds about one decoded stream and one tensor (plus the small streams that several
tensors share, while they are in use).

* ``.pt``: torch's own serializer writes the file. ``torch.serialization._save`` pickles the
  placeholder tree (under ``skip_data(materialize_fake_tensors=True)`` the FakeTensors pickle as
  CPU tensors of their shape) and then asks for each storage record in turn; the zip writer it is
  given (:class:`_LazyRecords`, around torch's ``PyTorchFileWriter``) answers each request by
  decoding that tensor and writing its bytes with ``write_record``. The pickler records which
  placeholder got which storage key. The result is an ordinary torch zip checkpoint (CRCs
  included) that ``torch.load(weights_only=True)`` reads like any other.
* ``.safetensors``: the header (names, dtypes, shapes, offsets: all known from the `.fzp` header)
  is written first, then each tensor's bytes in offset order.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import torch

from fzpack.container.file import Container
from fzpack.container.bytes_io import decode_varints
from fzpack.container.layout import ALIAS, FLAG_ADDITIVE, FLAG_DENSE, FLAG_MASK_FROM_SEED, FROZEN, ROLE_INDEX, itemsize
from fzpack.errors import FormatError
from fzpack.tensor_bits import byte_view
from fzpack.generator import compiled
from fzpack.unpack import _check_lossy, _frozen, _plan_frozen, _Streams, _take_values, _tree, frozen_elements

MASK_PREFIX = "__fzpack_mask__."

# (what, table index): "t" the tensor, "m" its mask, "d" its ADDITIVE offsets
Part = tuple[str, int]


class TensorSource:
    """Produces any tensor of a checked container on request, decoding its stream(s) then.

    Stream offsets of every tensor come from the header alone (index streams, a few bytes per
    exception, are decoded up front to find where each tensor's positions start). A decoded
    stream is kept while tensors that still need it are pending, and dropped after the last.
    """

    def __init__(self, c: Container) -> None:
        self.c = c
        h = self.h = c.header
        _check_lossy(h, c)
        compiled.expect(frozen_elements(h))
        self.raw = _Streams(c, auto_drop=False)
        self.cursors: dict[int, dict[int, int]] = {}  # tensor -> {stream: byte offset}
        self.users = [0] * len(h.streams)  # tensors that still have to take bytes from each stream
        pos = [0] * len(h.streams)
        for i, t in enumerate(h.tensors):
            if t.kind == ALIAS:
                continue
            cur = {t.stream: pos[t.stream]}
            pos[t.stream] += t.stored_count * itemsize(t.dtype)
            self.users[t.stream] += 1
            if t.kind == FROZEN:
                if not t.flags & FLAG_MASK_FROM_SEED:
                    cur[t.mask_stream] = pos[t.mask_stream]
                    pos[t.mask_stream] += t.mask_length
                    self.users[t.mask_stream] += 1
                if not t.flags & FLAG_DENSE and t.n_exceptions:
                    cur[t.index_stream] = pos[t.index_stream]
                    _, pos[t.index_stream] = decode_varints(self.raw[t.index_stream], pos[t.index_stream], t.n_exceptions,
                                                            t.numel, f"index stream {t.index_stream}")
            self.cursors[i] = cur
        for i, s in enumerate(h.streams):
            if s.role == ROLE_INDEX and pos[i] != len(self.raw[i]):
                raise FormatError(f"index stream {i} has {len(self.raw[i]) - pos[i]} unused bytes")
        self.banks = dict(h.banks)
        self.pending: dict[Part, int] = {}  # part -> requests still to come (want())
        self._cache: dict[Part, torch.Tensor] = {}  # produced parts that will be asked for again

    def want(self, parts: list[Part]) -> None:
        """The parts that will be asked for, with repeats: a part asked for twice is kept in between."""
        for part in parts:
            self.pending[part] = self.pending.get(part, 0) + 1

    def _release(self, streams: list[int]) -> None:
        for s in streams:
            self.users[s] -= 1
            if self.users[s] == 0:
                self.raw.drop(s)

    def get(self, part: Part) -> torch.Tensor:
        """The tensor, mask or offsets ``part`` (an alias: its target's), made now or kept from before."""
        kind, i = part
        t = self.h.tensors[i]
        if t.kind == ALIAS:
            return self.get((kind, t.target))
        if part not in self._cache:
            self._produce(i, t)
        value = self._cache[part]
        left = self.pending.get(part, 1) - 1
        self.pending[part] = left
        if left <= 0:
            del self._cache[part]
        return value

    def _produce(self, i: int, t: Any) -> None:
        cur = self.cursors[i]
        cursors = [0] * len(self.h.streams)
        for s, off in cur.items():
            cursors[s] = off
        if t.kind != FROZEN:
            self._cache[("t", i)] = _take_values(t, self.raw, cursors, t.numel)
            self._release([t.stream])
            return
        job = _plan_frozen(self.h, t, self.raw, cursors)
        self._release([s for s in cur if self.h.streams[s].role != ROLE_INDEX])
        out, mask, delta = _frozen(self.h, job, self.banks, "cpu")
        for kind, value in (("t", out), ("m", mask), ("d", delta)):
            if value is not None and (kind == "t" or self.pending.get((kind, i), 0) > 0):
                self._cache[(kind, i)] = value

    def finish(self) -> None:
        """Decode the streams no tensor used (a malformed payload is still an error)."""
        self.raw.check_rest()


def skeleton(h: Any) -> tuple[Any, dict[int, Part]]:
    """The restored object with FakeTensor placeholders; returns it and placeholder id -> part."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    parts: dict[int, Part] = {}
    tensors: list[torch.Tensor] = []
    masks: dict[int, torch.Tensor] = {}
    deltas: dict[int, torch.Tensor] = {}
    with FakeTensorMode() as mode:
        for i, t in enumerate(h.tensors):
            if t.kind == ALIAS:
                tensors.append(tensors[t.target])
                continue
            ph = torch.empty(t.shape, dtype=t.dtype)
            parts[id(ph)] = ("t", i)
            tensors.append(ph)
            if t.kind == FROZEN:
                masks[i] = torch.empty(t.shape, dtype=torch.bool)
                parts[id(masks[i])] = ("m", i)
                if t.flags & FLAG_ADDITIVE:
                    deltas[i] = torch.empty((t.k,), dtype=t.dtype)
                    parts[id(deltas[i])] = ("d", i)
    del mode
    return _tree(h, tensors, masks, deltas), parts


def _owned_storage(t: torch.Tensor) -> torch.UntypedStorage:
    """``t``'s storage when it holds exactly ``t`` (C order from offset 0), else that of a compact copy."""
    if not (t.is_contiguous() and t.storage_offset() == 0 and t.untyped_storage().nbytes() == t.numel() * t.element_size()):
        t = t.contiguous().clone()
    return t.untyped_storage()


# -- .pt through torch's own serializer -------------------------------------------------------------------
def torch_streaming_available() -> bool:
    """Does this torch have the serializer internals :func:`write_pt` drives (else ``restore -o`` works in memory)?"""
    ser = torch.serialization
    return all(hasattr(ser, n) for n in ("_save", "skip_data", "_open_zipfile_writer", "DEFAULT_PROTOCOL"))


class _KeyRecorder(pickle._Pickler):  # the pure-Python pickler: its save() sees every persistent id
    """Records which storage object each storage key of ``torch.serialization._save`` names."""

    keys: dict[str, Any]

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if save_persistent_id:
            pid = self.persistent_id(obj)
            if pid is not None:
                storage = obj._untyped_storage if isinstance(obj, torch.storage.TypedStorage) else obj
                type(self).keys.setdefault(pid[2], storage)
                self.save_pers(pid)
                return
        super().save(obj, save_persistent_id)


class _LazyRecords:
    """The zip writer ``_save`` talks to: storage records are filled with real bytes as they are asked for."""

    def __init__(self, writer: Any, data_of: Callable[[str], torch.UntypedStorage]) -> None:
        self._w = writer
        self._data_of = data_of

    def write_record_metadata(self, name: str, nbytes: int) -> None:
        storage = self._data_of(name.rsplit("/", 1)[-1])
        if storage.nbytes() != nbytes:
            raise FormatError(f"record {name}: {storage.nbytes()} bytes decoded, {nbytes} expected")
        self._w.write_record(name, storage, nbytes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._w, name)


def write_pt(c: Container, f: BinaryIO) -> int:
    """Write the checkpoint of ``c`` to ``f`` as a torch zip file, one tensor at a time; returns the tensor count."""
    ser = torch.serialization
    source = TensorSource(c)
    obj, parts = skeleton(c.header)
    placeholders = _placeholders(obj)
    storage_part = {ph.untyped_storage()._cdata: parts[id(ph)] for ph in placeholders if id(ph) in parts}

    class Recorder(_KeyRecorder):
        keys: dict[str, Any] = {}

    module = type(pickle)("fzpack_pickle")
    module.Pickler = Recorder
    module.Unpickler = pickle.Unpickler

    def data_of(key: str) -> torch.UntypedStorage:
        if not source.pending:  # first record: every key is known now (the pickle is written first)
            source.want([storage_part[s._cdata] for s in Recorder.keys.values()])
        part = storage_part[Recorder.keys[key]._cdata]
        return _owned_storage(source.get(part))

    with ser._open_zipfile_writer(f) as writer:
        with ser.skip_data(materialize_fake_tensors=True):
            ser._save(obj, _LazyRecords(writer, data_of), module, ser.DEFAULT_PROTOCOL, False)
    source.finish()
    return len(c.header.tensors)


def _placeholders(obj: Any) -> list[torch.Tensor]:
    out, seen, stack = [], set(), [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, torch.Tensor):
            if id(o) not in seen:
                seen.add(id(o))
                out.append(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
    return out


# -- safetensors --------------------------------------------------------------------------------------------
_ST_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
              torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
              torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64", torch.float8_e4m3fn: "F8_E4M3",
              torch.float8_e5m2: "F8_E5M2", torch.complex64: "C64"}


def safetensors_layout(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    """name -> tensor and the ``__metadata__`` of the safetensors form of a restored checkpoint.

    A flat state dict is written as it is; the convention (``state_dict`` + ``fzpack``) as its
    state dict, each frozen tensor's mask as ``__fzpack_mask__.<name>``, and everything else as
    JSON in ``__metadata__["fzpack"]``. Works on placeholders as on real tensors.
    """
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), None
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise FormatError("this checkpoint is neither a flat state dict nor the fzpack convention; restore it with --format pt")
    tensors = dict(obj["state_dict"])
    rest: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "state_dict":
            continue
        if key == "fzpack":
            value = {**value, "tensors": {n: {"init": t["init"], "mask": MASK_PREFIX + n} for n, t in value["tensors"].items()}}
            for n, t in obj["fzpack"]["tensors"].items():
                tensors[MASK_PREFIX + n] = t["mask"]
        rest[key] = value
    try:
        meta = json.dumps(rest, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise FormatError(f"entries besides the state dict are not JSON-representable ({e}); restore with --format pt") from e
    return tensors, {"fzpack": meta}


def safetensors_header(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> tuple[bytes, list[str]]:
    """The 8-byte length + JSON header (padded with spaces to a multiple of 8) and the data order."""
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))  # safetensors' own order: alignment first
    head: dict[str, Any] = {}
    if metadata is not None:
        head["__metadata__"] = metadata
    pos = 0
    for name in order:
        t = tensors[name]
        if t.dtype not in _ST_DTYPES:
            raise FormatError(f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot store; restore with --format pt")
        n = t.numel() * t.element_size()
        head[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + n]}
        pos += n
    text = json.dumps(head, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, order


def write_safetensors(c: Container, f: BinaryIO) -> int:
    """Write the checkpoint of ``c`` to ``f`` as safetensors, one tensor at a time; returns the tensor count."""
    source = TensorSource(c)
    obj, parts = skeleton(c.header)
    tensors, metadata = safetensors_layout(obj)
    head, order = safetensors_header(tensors, metadata)
    source.want([parts[id(tensors[n])] for n in order])  # a tensor under two names (tied) is decoded once
    f.write(head)
    for name in order:
        t = source.get(parts[id(tensors[name])])
        f.write(_bytes_of(t))
    source.finish()
    return len(c.header.tensors)


def _bytes_of(t: torch.Tensor) -> memoryview:
    """The tensor's little-endian bytes (a view of its memory when it is contiguous)."""
    return memoryview(np.ascontiguousarray(byte_view(t)))


__all__ = ["TensorSource", "skeleton", "torch_streaming_available", "write_pt", "write_safetensors"]

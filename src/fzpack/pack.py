"""Checkpoint object -> `.fzp` bytes (the writer side of formats/fzpack-v1.md).

Frozen tensors of the convention become init spec + coded mask + trained values (+ coded
exceptions for frozen entries that no longer equal their regeneration); every other tensor is
stored with the smallest lossless stream codec. Nothing is dropped: the result restores to a
bit-identical object - unless a lossy ``values`` mode is asked for, which then codes only the
trained values of frozen tensors with cast-fp16, cast-bf16 or q8 (formats/fzpack-v1.md §3.2.1).

Streaming: a plain tensor of OWN_STREAM_MIN bytes or more gets a stream of its own, which is
coded and handed to the output sink as soon as the tensor is reached (and, for a checkpoint
memory-mapped from disk, its pages are released again), and small plain tensors share a stream
that is closed the same way once it holds SHARED_STREAM_MAX bytes. The streams still open at the
end (small ones, the frozen tensors' trained / masks / index streams) follow, in the order they
were opened; the stream table lists the streams in exactly this payload order. A file without
large tensors thus keeps the layout of earlier writers, and :func:`pack_file` writes the same
bytes as :func:`pack` while holding about one tensor at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fzpack.checkpoint import FrozenInfo, FrozenTensor, frozen_info
from fzpack.codecs.lossy import LossyStream, applies, check_mode, check_values, encode_lossy, measure
from fzpack.codecs.mask import encode_mask
from fzpack.codecs.values import ZSTD, encode_stream, encode_values, zstd_dict_compress
from fzpack.container.bytes_io import Writer, encode_varints
from fzpack.container.file import crc32, encode_head
from fzpack.container.layout import (
    ALIAS, DTYPE_IDS, FLOAT_DTYPES, PREAMBLE_SIZE, FLAG_ADDITIVE, FLAG_DENSE, FLAG_MASK_FROM_SEED, FLAG_MASK_PER_ROW, FLAG_SCALED, FROZEN, GENERATOR_NONE,
    GENERATOR_PHILOX, PLAIN,
    ROLE_INDEX, ROLE_MASKS, ROLE_VALUES, Header, InitEntry, StreamEntry, TensorEntry,
)
from fzpack.container.tree import TreeEncoder
from fzpack.errors import CheckpointError
from fzpack.generator import compiled, generate, random_mask, random_mask_rows
from fzpack.tensor_bits import bits_view, byte_view, to_numpy_bytes

TREE_JSON, TREE_ZSTD, TREE_ZSTD_DICT = 0, 1, 2
#: Plain tensors of at least this many bytes get a stream of their own, coded and written as they are reached.
OWN_STREAM_MIN = 256 << 10
#: A stream shared by small plain tensors is coded and written once it holds this many bytes.
SHARED_STREAM_MAX = 16 << 20
#: Bytes of streams per file that may use the slow coders (zstd-19, ANS planes; each stream <= 4 MiB):
#: a small checkpoint gets the smallest file, a large one stays fast to write and to read.
SLOW_BUDGET = 16 << 20
_CONTEXT_DISTS = ("normal", "uniform", "bank")  # |w0| says something about saliency only for these


class _NotCanonical(Exception):
    """The convention's promise does not hold for a tensor: the file falls back to generic coding."""


@dataclass
class PackResult:
    """The file bytes (``pack``; ``None`` from ``pack_file``) plus what the CLI and reports show about them."""

    data: bytes | None
    header: Header
    frozen: bool
    notes: list[str] = field(default_factory=list)
    stream_groups: list[str] = field(default_factory=list)  # per stream: masks | trained | other | index
    values: str = "lossless"
    lossy: dict[int, LossyStream] = field(default_factory=dict)  # stream index -> what its codec did
    size: int = 0  # bytes of the whole file
    header_length: int = 0  # bytes of the header body (after the 20-byte preamble)

    @property
    def max_abs_error(self) -> float:
        """Largest measured |restored - original| over the lossy streams (0.0 when lossless)."""
        return max((s.max_abs_error for s in self.lossy.values()), default=0.0)


class _MemorySink:
    """Payloads of the streams closed early, kept in memory (``pack``)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)

    def reset(self) -> None:
        self.parts, self.size = [], 0


class _Packer:
    def __init__(self, info: FrozenInfo | None, values: str = "lossless", sink: Any = None,
                 release: Callable[[torch.Tensor], None] | None = None) -> None:
        self.info = info
        self.values = values
        self.sink = sink if sink is not None else _MemorySink()
        self.release = release  # called with a tensor once its bytes are coded (a memory-mapped input drops its pages)
        self.closed: list[int] = []  # streams coded and written early, in payload order
        self.slow_left = SLOW_BUDGET
        self.header = Header(generator=GENERATOR_PHILOX if info else GENERATOR_NONE, seed=info.seed if info else 0)
        if info:
            self.header.banks = list(info.banks.items())
        self.bank_index = {n: i for i, (n, _) in enumerate(self.header.banks)}
        self.by_id: dict[int, int] = {}
        self.by_storage: dict[tuple, int] = {}
        self.names: set[str] = set()
        self.tensors: list[torch.Tensor] = []
        self.streams: dict[tuple, int] = {}  # (group, dtype) -> stream index
        self.chunks: list[list[bytes]] = []
        self.groups: list[str] = []
        self.dtypes: list[torch.dtype] = []
        self.index_writer = Writer()
        self.index_stream = -1
        self.mask_models: set[int] = set()  # byte 0 of every mask payload: model 4 (GAPS) makes the file 1.2

    # -- tensor table ---------------------------------------------------------------------------
    def add(self, t: torch.Tensor, suggested: str) -> tuple[int, str]:
        if id(t) in self.by_id:
            i = self.by_id[id(t)]
            return i, self.header.tensors[i].name
        _check_supported(t, suggested)
        name = suggested or "tensor"
        n = 1
        while name in self.names:
            n += 1
            name = f"{suggested}#{n}"
        self.names.add(name)
        i = len(self.header.tensors)
        self.by_id[id(t)] = i
        self.tensors.append(t)  # keep alive so ids stay unique while packing
        ft = self.info.tensors.get(name) if self.info else None
        if ft is not None and t is not self.obj["state_dict"][name]:
            ft = None  # a tensor elsewhere in the tree that merely has the same name is plain data
        skey = _storage_key(t)
        if ft is None and skey in self.by_storage:  # tied weights: one copy, restored as one object
            self.header.tensors.append(TensorEntry(name=name, dtype=t.dtype, shape=tuple(t.shape), kind=ALIAS, target=self.by_storage[skey]))
            return i, name
        self.by_storage.setdefault(skey, i)
        entry = self._frozen(t, name, ft) if ft is not None else self._plain(t, name)
        self.header.tensors.append(entry)
        return i, name

    def _stream(self, group: str, dtype: torch.dtype, role: int, itemsize: int, owner: str = "") -> int:
        key = (group, dtype, owner)
        if key not in self.streams:
            self.streams[key] = len(self.header.streams)
            self.header.streams.append(StreamEntry(codec=0, role=role, itemsize=itemsize, raw_length=0, stored_length=0, crc32=0))
            self.chunks.append([])
            self.groups.append(group)
            self.dtypes.append(dtype)
        return self.streams[key]

    def _put(self, s: int, data: bytes) -> None:
        self.chunks[s].append(data)
        self.header.streams[s].raw_length += len(data)

    def _plain(self, t: torch.Tensor, name: str) -> TensorEntry:
        size = t.element_size()
        nbytes = t.numel() * size
        if nbytes >= OWN_STREAM_MIN:  # its own stream, coded and written now: the tensor is not held
            s = self._stream("other", t.dtype, ROLE_VALUES, size, owner=f"tensor:{name}")
            self.header.streams[s].raw_length = nbytes
            self._close(s, byte_view(t))
            if self.release is not None:
                self.release(t)
        else:
            s = self._stream("other", t.dtype, ROLE_VALUES, size)
            self._put(s, to_numpy_bytes(t))
            if self.header.streams[s].raw_length >= SHARED_STREAM_MAX:
                self._close(s)
        return TensorEntry(name=name, dtype=t.dtype, shape=tuple(t.shape), kind=PLAIN, stream=s)

    def _close(self, s: int, raw: Any = None) -> None:
        """Code stream ``s`` now (its chunks, or ``raw``) and write its payload: it takes no more tensors."""
        entry = self.header.streams[s]
        if raw is None:
            raw = b"".join(self.chunks[s])
        self.chunks[s] = []
        entry.codec, payload = self._encode(s, raw)
        entry.stored_length, entry.crc32 = len(payload), crc32(payload)
        self.sink.write(payload)
        self.closed.append(s)
        for key in [k for k, v in self.streams.items() if v == s]:
            del self.streams[key]  # the next small tensor opens a new stream

    def _frozen(self, t: torch.Tensor, name: str, ft: FrozenTensor) -> TensorEntry:
        info = self.info
        assert info is not None
        shape = tuple(t.shape)
        t = t.detach().to("cpu").contiguous()
        regen32 = generate(ft.spec, info.seed, name, shape, dtype=torch.float32, device="cpu", banks=info.banks)
        regen = (regen32 if ft.scale is None else regen32 * ft.scale).to(t.dtype)
        mask = ft.mask.to("cpu")
        k = int(mask.sum())
        flat_mask = mask.reshape(-1)
        additive = ft.delta is not None
        if additive:  # DCTpS: the stored values are the offsets, and W must be exactly R + offset there
            delta = ft.delta.detach().to("cpu").contiguous().reshape(-1)
            expect = regen.reshape(-1)[flat_mask] + delta
            if not torch.equal(bits_view(expect), bits_view(t.reshape(-1)[flat_mask])):
                raise _NotCanonical(f"tensor {name!r}: trained entries are not frozen value + delta")
        differs = (bits_view(t) != bits_view(regen)) & ~mask
        exc_pos = torch.nonzero(differs.reshape(-1)).reshape(-1)
        n_exc = int(exc_pos.numel())
        spec = ft.spec
        init = InitEntry(dist=spec.dist, params=_params(spec, name), bank=self.bank_index.get(spec.bank, 0),
                         offset=spec.offset, scheme=self._scheme(ft.scheme), scale=ft.scale)
        e = TensorEntry(name=name, dtype=t.dtype, shape=shape, kind=FROZEN, init=init, k=k,
                        flags=(FLAG_SCALED if ft.scale is not None else 0) | (FLAG_ADDITIVE if additive else 0))
        if torch.equal(mask, random_mask(info.seed, name, shape, k)):
            e.flags |= FLAG_MASK_FROM_SEED
        elif _per_row_counts(mask, k) and torch.equal(mask, random_mask_rows(info.seed, name, shape, k)):
            e.flags |= FLAG_MASK_FROM_SEED | FLAG_MASK_PER_ROW
        else:
            context = regen32.abs().numpy() if spec.dist in _CONTEXT_DISTS else None
            payload = encode_mask(mask.numpy(), context)
            e.mask_stream = self._stream("masks", torch.uint8, ROLE_MASKS, 1)
            e.mask_length = len(payload)
            self.mask_models.add(payload[0])
            self._put(e.mask_stream, payload)
        # An exception costs its value plus a ~1-2 byte position; past half the tensor, store it all.
        if n_exc and not additive and k + n_exc * (1 + 2 / t.element_size()) >= t.numel():
            e.flags |= FLAG_DENSE
            values = t.reshape(-1)
        else:
            flat = t.reshape(-1)
            values = torch.cat([delta if additive else flat[flat_mask], flat[exc_pos]])
            e.n_exceptions = n_exc
            if n_exc:
                e.index_stream = self._index()
                pos = exc_pos.numpy()
                self.index_writer.raw(encode_varints(np.diff(pos, prepend=-1) - 1))
        check_values(self.values, name, values)
        # q8 quantises per stream: give each tensor its own, so each gets its own grid.
        owner = name if self.values == "q8" and applies("q8", t.dtype) else ""
        e.stream = self._stream("trained", t.dtype, ROLE_VALUES, t.element_size(), owner)
        self._put(e.stream, to_numpy_bytes(values))
        return e

    def _encode(self, i: int, raw: Any) -> tuple[int, bytes]:
        """The lossless coding of stream ``i``: masks as they are, floating values with PLANES when long enough.

        Streams up to 4 MiB may use the slow coders while the file's SLOW_BUDGET lasts (streams
        are coded in a fixed order, so ``pack`` and ``pack_file`` choose alike).
        """
        s = self.header.streams[i]
        if s.role == ROLE_MASKS:
            return 0, bytes(raw)
        n = s.raw_length
        slow = n <= self.slow_left and n <= (4 << 20)
        if slow:
            self.slow_left -= n
        if s.role == ROLE_VALUES:
            return encode_values(raw, s.itemsize, self.dtypes[i] in FLOAT_DTYPES, slow=slow)
        return encode_stream(bytes(raw), s.itemsize, slow=slow)

    def _index(self) -> int:
        if self.index_stream < 0:
            self.index_stream = self._stream("index", torch.uint8, ROLE_INDEX, 1)
        return self.index_stream

    def _scheme(self, scheme: str) -> int:
        if scheme not in self.header.schemes:
            self.header.schemes.append(scheme)
        return self.header.schemes.index(scheme)

    # -- whole file -----------------------------------------------------------------------------
    def pack(self, obj: Any) -> tuple[PackResult, bytes, list[bytes]]:
        """Code ``obj``: returns the result, the preamble + header, and the payloads of the streams not written yet."""
        self.obj = obj
        special: dict[int, Any] = {}
        if self.info:
            compiled.expect(sum(t.mask.numel() for t in self.info.tensors.values()))
            sd = obj["state_dict"]
            for name in sd:  # state-dict tensors claim their own names first
                if isinstance(sd[name], torch.Tensor):
                    self.add(sd[name], name)
            order = [self.by_id[id(sd[n])] for n in self.info.tensors]
            special[id(obj["fzpack"]["tensors"])] = {"$fzt": order}
        tree = TreeEncoder(self.add, special).encode(obj)
        options = [(TREE_JSON, tree), (TREE_ZSTD, encode_stream(tree, 1, candidates=(ZSTD,))[1]),
                   (TREE_ZSTD_DICT, zstd_dict_compress(tree))]
        self.header.tree_codec, self.header.tree = min(options, key=lambda o: len(o[1]))
        if self.index_stream >= 0:
            idx = self.index_writer.getvalue()
            self.chunks[self.index_stream] = [idx]
            self.header.streams[self.index_stream].raw_length = len(idx)
        closed = set(self.closed)
        rest = [i for i in range(len(self.header.streams)) if i not in closed]
        stored = []
        lossy: dict[int, LossyStream] = {}
        for i in rest:
            s = self.header.streams[i]
            raw = b"".join(self.chunks[i])
            self.chunks[i] = []
            codec, payload = self._encode(i, raw)
            if self.groups[i] == "trained" and self.values != "lossless":
                coded = encode_lossy(self.values, raw, self.dtypes[i])
                if coded is not None and len(coded[1]) < len(payload):  # lossless wins ties and tiny streams
                    codec, payload = coded
                    lossy[i] = measure(codec, payload, raw, self.dtypes[i])
            s.codec, s.stored_length, s.crc32 = codec, len(payload), crc32(payload)
            stored.append(payload)
        order = self.closed + rest  # payload order: the streams written early, then the rest as opened
        new = {old: i for i, old in enumerate(order)}
        self._renumber(new)
        head = encode_head(self.header, self.mask_models)
        return PackResult(data=None, header=self.header, frozen=self.info is not None, stream_groups=self.groups,
                          values=self.values, lossy={new[i]: v for i, v in lossy.items()},
                          size=len(head) + self.sink.size + sum(map(len, stored)),
                          header_length=len(head) - PREAMBLE_SIZE), head, stored

    def _renumber(self, new: dict[int, int]) -> None:
        """Put the stream table in payload order and point every tensor at its stream's new index."""
        if all(old == i for old, i in new.items()):
            return
        order = sorted(new, key=new.get)
        self.header.streams = [self.header.streams[i] for i in order]
        self.groups = [self.groups[i] for i in order]
        self.dtypes = [self.dtypes[i] for i in order]
        for t in self.header.tensors:
            if t.kind == ALIAS:
                continue
            t.stream = new[t.stream]
            if t.kind == FROZEN:
                if not t.flags & FLAG_MASK_FROM_SEED:
                    t.mask_stream = new[t.mask_stream]
                if t.n_exceptions:
                    t.index_stream = new[t.index_stream]


def pack(obj: Any, values: str = "lossless") -> PackResult:
    """Encode a checkpoint object (anything ``torch.load(weights_only=True)`` returns) into bytes (``.data``).

    A valid `fzpack` entry turns on frozen coding; an invalid one falls back to generic coding
    with a note saying why, so compression never loses data because of metadata.

    Args:
        obj: the checkpoint object.
        values: ``lossless`` (default) or an opt-in lossy codec for the trained values of frozen
            tensors: ``fp16``, ``bf16`` or ``q8``. Everything else stays lossless.

    Returns:
        A :class:`PackResult`; ``lossy`` holds the measured error of each lossy stream.

    Example:
        >>> result = pack(ckpt, values="q8")
        >>> len(result.data), result.max_abs_error
    """
    sink = _MemorySink()
    result, head, rest = _pack(obj, values, sink)
    result.data = b"".join([head, *sink.parts, *rest])
    return result


def pack_file(obj: Any, dst: str | os.PathLike, values: str = "lossless", *,
              release: Callable[[torch.Tensor], None] | None = None) -> PackResult:
    """:func:`pack` straight into the file ``dst``, holding about one tensor at a time; same bytes.

    Streams closed early go to a temporary file beside ``dst`` as they are coded; the file is
    then assembled (preamble + header, that temporary file, the remaining streams) in another
    temporary file that replaces ``dst`` atomically (:mod:`fzpack.atomic`): a failure never
    leaves a partial ``dst``.

    Args:
        release: called with each large plain tensor once it is coded (``compress`` passes one
            that drops the pages of a memory-mapped checkpoint).
    """
    from fzpack.atomic import StreamSpool, write_atomic

    with StreamSpool(dst) as spool:
        result, head, rest = _pack(obj, values, spool, release)

        def write(f: Any) -> None:
            f.write(head)
            spool.copy_to(f)
            for payload in rest:
                f.write(payload)

        write_atomic(dst, write)
    return result


def _pack(obj: Any, values: str, sink: Any, release: Callable[[torch.Tensor], None] | None = None) -> tuple[PackResult, bytes, list[bytes]]:
    check_mode(values)
    notes = []
    try:
        info = frozen_info(obj)
    except CheckpointError as e:
        info = None
        notes.append(f"the 'fzpack' entry is not valid ({e}); compressed generically")
    if info is not None and not _canonical(obj["fzpack"]["tensors"], info):
        notes.append("the 'fzpack.tensors' entries are not in canonical form; compressed generically")
        info = None
    if info is None and not notes:
        notes.append("no frozen structure found (no 'fzpack' entry): generic lossless coding only")
    if values != "lossless" and info is None:
        notes.append(f"--values {values} applies to the trained values of frozen tensors; there are none, so the file is lossless")
    try:
        result, head, rest = _Packer(info, values, sink, release).pack(obj)
    except _NotCanonical as e:
        notes.append(f"{e}; compressed generically")
        sink.reset()
        result, head, rest = _Packer(None, values, sink, release).pack(obj)
    result.notes = notes + result.notes
    return result, head, rest


def _per_row_counts(mask: torch.Tensor, k: int) -> bool:
    """Does every row hold what random_mask_rows gives it (k // R, plus one in the first k % R rows)?

    A cheap test that spares the per-row regeneration for masks that cannot be per-row (SNIP).
    """
    if mask.dim() < 2 or mask.shape[0] == 0:
        return False
    rows = mask.shape[0]
    want = k // rows + (torch.arange(rows) < k % rows).long()
    return torch.equal(mask.reshape(rows, -1).sum(1), want)


def _canonical(tensors: Mapping, info: FrozenInfo) -> bool:
    """Restore rebuilds 'tensors' from the table: it must be exactly what we would rebuild."""
    for name, t in tensors.items():
        ft = info.tensors[name]
        if list(t) != ["init", "mask"] + (["delta"] if ft.delta is not None else []):
            return False
        want = ft.init_dict()
        init = t["init"]
        if list(init) != list(want) or any(type(init[k]) is not type(want[k]) or init[k] != want[k] for k in want):
            return False
    return True


def _params(spec: Any, name: str) -> tuple[float, ...]:
    params = {"zeros": (), "normal": (spec.p0, spec.p1), "uniform": (spec.p0, spec.p1), "pm": (spec.p0,),
              "bank": (spec.p0,), "dct": ()}.get(spec.dist)
    if params is None:  # a generator dist that this container version has no id for
        raise CheckpointError(f"tensor {name!r}: dist {spec.dist!r} has no id in the .fzp format; cannot pack it")
    return params


def _check_supported(t: torch.Tensor, where: str) -> None:
    if t.layout != torch.strided:
        raise CheckpointError(f"tensor {where!r} has layout {t.layout}; only dense (strided) tensors are supported")
    if t.is_quantized or t.device.type == "meta":
        raise CheckpointError(f"tensor {where!r} is quantized or on the meta device; not supported")
    if t.dtype not in DTYPE_IDS:
        raise CheckpointError(f"tensor {where!r} has dtype {t.dtype}, which fzpack v1 cannot store")


def _storage_key(t: torch.Tensor) -> tuple:
    if t.numel() == 0:
        return ("empty", id(t))
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype, t.device)

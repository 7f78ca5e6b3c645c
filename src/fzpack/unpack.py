"""`.fzp` bytes -> checkpoint object (the reader side of formats/fzpack-v1.md).

Order of work: the whole file is checked (checksums, header consistency, size budget) before
any stream is decompressed; each stream is then decoded with its exact declared size; frozen
tensors are regenerated on the requested device and the trained values written into them.

The tensor loop runs in two phases: a cheap sequential one that walks the stream cursors in table
order (slicing every tensor's mask / values / exception bytes, with all their checks), and the
heavy one (regenerate, decode the mask, write the trained values) that is independent per tensor
and, for large CPU restores, runs on a small thread pool (numpy releases the GIL in its loops).
Results and errors do not depend on the thread count: tensors are collected in table order and
the first failing tensor's error is the one raised, as with a purely sequential loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import zstandard

from fzpack.checkpoint import FrozenTensor
from fzpack.codecs.mask import decode_mask_positions
from fzpack.codecs.mask_device import decode_mask_device
from fzpack.codecs.lossy import payload_dtype
from fzpack.codecs.values import LOSSY_CODECS, decode_stream, zstd_decompress_exact
from fzpack.container.bytes_io import decode_varints
from fzpack.container.file import DEFAULT_MAX_BYTES, Container, open_container
from fzpack.container.layout import (
    ALIAS, FLAG_ADDITIVE, FLAG_DENSE, FLAG_MASK_FROM_SEED, FLAG_MASK_PER_ROW, FLAG_SCALED, FROZEN, MAX_HEADER_BYTES, ROLE_INDEX, ROLE_MASKS, ROLE_NAMES, ROLE_VALUES, Header,
    TensorEntry, itemsize,
)
from fzpack.container.tree import TreeDecoder
from fzpack.errors import CodecError, FormatError, FzpackError
from fzpack.generator import InitSpec, compiled, generate, random_mask, random_mask_rows
from fzpack.pack import TREE_JSON, TREE_ZSTD, TREE_ZSTD_DICT
from fzpack.tensor_bits import from_bytes

#: Frozen elements (all tensors together) below which restoring stays on the calling thread.
PARALLEL_MIN_ELEMENTS = 1 << 20


def _default_restore_threads() -> int:
    value = os.environ.get("FZPACK_RESTORE_THREADS")
    if value is None:
        return max(1, min(4, os.cpu_count() or 1))
    try:
        return max(1, min(int(value), 64))
    except ValueError:
        return 1


_restore_threads = _default_restore_threads()


def set_restore_threads(n: int) -> None:
    """Set how many frozen tensors a CPU restore rebuilds at once (default min(4, CPUs), $FZPACK_RESTORE_THREADS).

    1 restores strictly one tensor after the other. The result never depends on the setting; files
    with fewer than PARALLEL_MIN_ELEMENTS frozen elements always restore on the calling thread.
    """
    global _restore_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise FzpackError(f"thread count must be a positive integer, got {n!r}")
    _restore_threads = min(n, 64)


def get_restore_threads() -> int:
    """Current number of restore threads (see set_restore_threads)."""
    return _restore_threads


@dataclass
class Unpacked:
    """Decoded tensors (table order), masks of frozen tensors, and the rebuilt object tree."""

    header: Header
    tensors: list[torch.Tensor]
    masks: dict[int, torch.Tensor]
    obj: Any
    deltas: dict[int, torch.Tensor] = field(default_factory=dict)  # ADDITIVE tensors: their stored offsets


def unpack(data: bytes | memoryview | os.PathLike | str | Container, *, device: str | torch.device = "cpu",
           max_bytes: int = DEFAULT_MAX_BYTES, progress: Callable[[int], None] | None = None) -> Unpacked:
    """Decode a whole `.fzp` file.

    The file is checked completely first (section 6 up to every stream's checksum); then the
    streams are decoded one at a time as the tensors that use them come up in table order, and
    each is dropped once its last tensor has taken its bytes, so a restore holds the tensors
    built so far plus one decoded stream (a tensor with a stream of its own takes the decoded
    buffer itself, no copy).

    Args:
        data: the file's bytes, its path, or an open :class:`Container`.
        device: where tensors are built; frozen weights are regenerated there, bit-identically.
        max_bytes: refuse files whose tensors would take more memory than this (a tiny file can
            describe huge frozen tensors).
        progress: called with 1 after each tensor.
    """
    if isinstance(data, Container):
        return _unpack(data, device, progress)
    with open_container(data, max_bytes) as c:
        return _unpack(c, device, progress)


def frozen_elements(h: Header) -> int:
    """Values a restore of this header regenerates (announced to the kernel choice, `compiled.expect`)."""
    return sum(t.numel for t in h.tensors if t.kind == FROZEN)


def _unpack(c: Container, device: str | torch.device, progress: Callable[[int], None] | None) -> Unpacked:
    header = c.header
    compiled.expect(frozen_elements(header))
    _check_lossy(header, c)
    raw = _Streams(c)
    cursors = [0] * len(raw)
    banks = dict(header.banks)
    pool = _pool_for([t for t in header.tensors if t.kind == FROZEN], device)
    # Phase 1 (sequential, cheap): slice every tensor's bytes in table order. An error stops the
    # walk; it is raised only after the tensors before it were built (their errors come first).
    # With a pool, frozen tensors' values are only located here: their streams are decoded in
    # phase 2 by this thread while the pool regenerates and decodes masks.
    plan: list[Any] = []
    error: FormatError | None = None
    for t in header.tensors:
        try:
            if t.kind == ALIAS:
                plan.append(None)
            elif t.kind == FROZEN:
                job = _plan_frozen(header, t, raw, cursors, defer=pool is not None)
                plan.append(job)
                if job.error is not None:
                    break
            else:
                plan.append(_take_values(t, raw, cursors, t.numel))
        except FormatError as e:
            error = e
            break
    # Phase 2: rebuild the frozen tensors (independent of each other), collected in table order.
    jobs = [j for j in plan if isinstance(j, _FrozenJob)]
    try:
        if pool is not None:  # largest first: balances the threads
            for j in sorted(jobs, key=lambda j: -j.t.numel):
                j.future = pool.submit(_rebuild, header, j, banks, device)
        tensors: list[torch.Tensor] = []
        masks: dict[int, torch.Tensor] = {}
        deltas: dict[int, torch.Tensor] = {}
        for i, item in enumerate(plan):
            t = header.tensors[i]
            if item is None:
                tensors.append(tensors[t.target])
            elif isinstance(item, _FrozenJob):
                if item.future is None:
                    out, mask, delta = _frozen(header, item, banks, device)
                else:
                    rebuilt = item.future.result()
                    item.future = None
                    if item.values_at is not None:
                        item.values = raw.take_deferred(item.values_at, cursors)
                    out, mask, delta = _finish(item, rebuilt)
                tensors.append(out)
                masks[i] = mask
                if delta is not None:
                    deltas[i] = delta
            else:
                tensors.append(item.to(device))
            if progress:
                progress(1)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error
    for i, s in enumerate(header.streams):
        if s.role == ROLE_INDEX and cursors[i] != len(raw[i]):
            raise FormatError(f"index stream {i} has {len(raw[i]) - cursors[i]} unused bytes")
    raw.check_rest()
    obj = _tree(header, tensors, masks, deltas)
    return Unpacked(header=header, tensors=tensors, masks=masks, obj=obj, deltas=deltas)


def _pool_for(frozen: list[TensorEntry], device: Any) -> ThreadPoolExecutor | None:
    """A pool for a large CPU restore of these frozen tensors (else None: they are built on this thread)."""
    threads = min(_restore_threads, len(frozen))
    if threads < 2 or sum(t.numel for t in frozen) < PARALLEL_MIN_ELEMENTS:
        return None
    try:
        if torch.device(device).type != "cpu":
            return None
    except (RuntimeError, TypeError):  # an invalid device fails in the first tensor, as sequentially
        return None
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fzpack-restore")


def _decode(i: int, s: Any, payload: bytes | memoryview) -> bytes | memoryview:
    try:
        return decode_stream(s.codec, payload if isinstance(payload, bytes) else bytes(payload), s.raw_length, s.itemsize)
    except CodecError as e:
        raise FormatError(f"stream {i}: {e}") from e


class _Streams:
    """The decoded streams of a container, decoded on first use and dropped when used up.

    ``raw[i]`` decodes stream ``i`` (its checksum was checked when the container was opened and
    is checked again as its bytes are read); ``done_with`` drops a values or masks stream once
    the cursor has consumed all of it, so at most the streams in use are held. ``check_rest``
    decodes the streams no tensor used (length 0), so a malformed payload is still an error.
    """

    def __init__(self, c: Container, auto_drop: bool = True) -> None:
        self._c = c
        self._auto = auto_drop  # False: the caller drops streams (it takes tensors in another order)
        self._cache: dict[int, bytes | memoryview] = {}
        self._decoded: set[int] = set()
        self._dropped: set[int] = set()
        self._deferred: dict[int, int] = {}  # stream -> slices located but not taken yet

    def __len__(self) -> int:
        return len(self._c.header.streams)

    def __getitem__(self, i: int) -> bytes | memoryview:
        data = self._cache.get(i)
        if data is None:
            if i in self._dropped:
                return b""  # used up: what is left of it is empty (a zero-element tensor after the last one)
            s = self._c.header.streams[i]
            payload = self._c.payload(i)
            data = _decode(i, s, payload) if s.role != ROLE_MASKS else bytes(payload)
            self._cache[i] = data
            self._decoded.add(i)
        return data

    def owned(self, i: int) -> bool:
        """Is stream ``i``'s decoded buffer writable (so a tensor may adopt it without a copy)?"""
        data = self._cache.get(i)
        return isinstance(data, memoryview) and not data.readonly

    def done_with(self, i: int, cursors: list[int]) -> None:
        if (self._auto and not self._deferred.get(i) and cursors[i] == self._c.header.streams[i].raw_length
                and self._c.header.streams[i].role != ROLE_INDEX):
            self.drop(i)

    def defer(self, i: int) -> None:
        """A slice of stream ``i`` will be taken later (`take_deferred`): keep the stream until then."""
        self._deferred[i] = self._deferred.get(i, 0) + 1

    def take_deferred(self, at: tuple[int, int, int], cursors: list[int]) -> bytes | memoryview:
        """The slice ``(stream, offset, bytes)`` located by `defer` (decoding the stream on first use)."""
        i, start, n = at
        data = self[i][start : start + n]  # lengths were validated against the header already
        self._deferred[i] -= 1
        self.done_with(i, cursors)
        return data

    def drop(self, i: int) -> None:
        self._cache.pop(i, None)
        self._dropped.add(i)

    def check_rest(self) -> None:
        for i in range(len(self)):
            if i not in self._decoded:
                self[i]
                self._cache.pop(i, None)


def _check_lossy(h: Header, c: Container) -> None:
    """A lossy codec may code only a values stream, and only for tensors of the dtype its payload names."""
    for i, s in enumerate(h.streams):
        if s.codec not in LOSSY_CODECS or s.role == ROLE_MASKS:
            continue
        if s.role != ROLE_VALUES:
            raise FormatError(f"stream {i}: lossy codec {s.codec} on a {ROLE_NAMES[s.role]} stream")
        try:
            dtype = payload_dtype(s.codec, c.prefix(i, 1), s.itemsize)
        except CodecError as e:
            raise FormatError(f"stream {i}: {e}") from e
        for t in h.tensors:
            if t.kind != ALIAS and t.stream == i and t.dtype != dtype:
                raise FormatError(f"stream {i} decodes to {dtype} but tensor {t.name!r} is {t.dtype}")


def _take(raw: Any, cursors: list[int], s: int, n: int) -> bytes | memoryview:
    start = cursors[s]
    cursors[s] += n
    out = raw[s][start : start + n]  # lengths were validated against the header already
    if isinstance(raw, _Streams):
        raw.done_with(s, cursors)  # the last tensor of the stream: drop the decoded stream
    return out


def _take_values(t: TensorEntry, raw: Any, cursors: list[int], count: int, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    nbytes = count * itemsize(t.dtype)
    # A tensor that is its whole stream adopts a writable decoded buffer instead of copying it.
    whole = cursors[t.stream] == 0 and nbytes == len(raw[t.stream]) and isinstance(raw, _Streams) and raw.owned(t.stream)
    data = _take(raw, cursors, t.stream, nbytes)
    if t.dtype == torch.bool and data and _max_byte(data) > 1:
        raise FormatError(f"tensor {t.name!r}: bool values other than 0 and 1")
    return from_bytes(data, t.dtype, shape if shape is not None else t.shape, copy=not whole)


def _max_byte(data: bytes | memoryview) -> int:
    return int(np.frombuffer(data, np.uint8).max())


def _spec(h: Header, t: TensorEntry) -> InitSpec:
    init = t.init
    assert init is not None
    p = list(init.params) + [0.0] * (2 - len(init.params))
    bank = h.banks[init.bank][0] if init.dist == "bank" else ""
    try:
        return InitSpec(dist=init.dist, p0=p[0], p1=p[1], bank=bank, offset=init.offset)
    except Exception as e:  # the generator validates its params with its own error types
        raise FormatError(f"tensor {t.name!r}: invalid init parameters: {e}") from e


@dataclass(eq=False)
class _FrozenJob:
    """One frozen tensor's inputs, sliced from the streams in table order (phase 1)."""

    t: TensorEntry
    spec: InitSpec
    mask_payload: bytes | None  # None: the mask comes from the seed
    values: bytes | None  # k + n_exceptions values (numel if dense); None until `values_at` is taken
    deltas: np.ndarray | None  # exception position deltas (decoded varints)
    error: FormatError | None = None  # bad exception bytes: raised after the mask, where the exceptions are checked
    future: Future | None = None  # the pool's regeneration + mask decoding (`_rebuild`)
    values_at: tuple[int, int, int] | None = None  # (stream, offset, bytes): values taken later (see _Streams.defer)


def _plan_frozen(h: Header, t: TensorEntry, raw: list[bytes], cursors: list[int], defer: bool = False) -> _FrozenJob:
    """Slice one frozen tensor's bytes; with ``defer`` its values are only located (``values_at``),
    so their stream is decoded later, while the pool already regenerates and decodes masks."""
    spec = _spec(h, t)
    payload = None if t.flags & FLAG_MASK_FROM_SEED else _take(raw, cursors, t.mask_stream, t.mask_length)
    count = t.numel if t.flags & FLAG_DENSE else t.k + t.n_exceptions
    nbytes = count * itemsize(t.dtype)
    if defer and isinstance(raw, _Streams):
        job = _FrozenJob(t, spec, payload, None, None, values_at=(t.stream, cursors[t.stream], nbytes))
        raw.defer(t.stream)
        cursors[t.stream] += nbytes
    else:
        job = _FrozenJob(t, spec, payload, _take(raw, cursors, t.stream, nbytes), None)
    if not t.flags & FLAG_DENSE and t.n_exceptions:
        try:
            job.deltas, cursors[t.index_stream] = decode_varints(raw[t.index_stream], cursors[t.index_stream], t.n_exceptions,
                                                                 t.numel, f"index stream {t.index_stream}")
        except FormatError as e:
            job.error = e
    return job


def _values(t: TensorEntry, data: bytes, shape: tuple[int, ...]) -> torch.Tensor:
    if t.dtype == torch.bool and data and max(data) > 1:
        raise FormatError(f"tensor {t.name!r}: bool values other than 0 and 1")
    return from_bytes(data, t.dtype, shape)


@dataclass
class _Rebuilt:
    """What `_rebuild` made of a frozen tensor: the regenerated R (float32), its mask, and the
    flat positions of the trained entries (numpy on the CPU, a tensor on `dev` elsewhere; None: from the mask)."""

    regen32: torch.Tensor
    mask: torch.Tensor
    mask_np: np.ndarray | None
    positions: Any
    on_cpu: bool


def _frozen(h: Header, job: _FrozenJob, banks: dict[str, int], device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    return _finish(job, _rebuild(h, job, banks, device))


def _rebuild(h: Header, job: _FrozenJob, banks: dict[str, int], device: Any) -> _Rebuilt:
    """The part of a frozen tensor that needs no values stream: regeneration and mask decoding."""
    t, spec = job.t, job.spec
    regen32 = generate(spec, h.seed, t.name, t.shape, dtype=torch.float32, device=device, banks=banks)
    dev = regen32.device
    on_cpu = dev.type == "cpu" and not _DEVICE_PATH_ON_CPU
    positions: Any = None  # flat positions of the trained entries: numpy on the CPU, a tensor on `dev` elsewhere
    if job.mask_payload is None:
        draw = random_mask_rows if t.flags & FLAG_MASK_PER_ROW else random_mask
        mask = draw(h.seed, t.name, t.shape, t.k, device=dev)  # off the CPU: keys and selection on the device
        mask_np = mask.numpy() if on_cpu else None
        if not on_cpu:
            positions = torch.nonzero(mask.reshape(-1)).reshape(-1)
    else:
        informative = spec.dist in ("normal", "uniform", "bank")
        try:
            if on_cpu:  # the codec bins |context|, so the signed values serve as well as |R32| (no copy)
                mask_np, positions = decode_mask_positions(job.mask_payload, t.shape, t.k, regen32.numpy() if informative else None)
            else:  # the context stays on the device; only class counts, ranks and positions cross the bus
                mask_np, positions = decode_mask_device(job.mask_payload, t.shape, t.k, regen32 if informative else None)
                positions = positions.to(dev)
        except CodecError as e:
            raise FormatError(f"tensor {t.name!r}: mask: {e}") from e
        # on the host, where the restored checkpoint keeps its masks (see _tree)
        mask = torch.from_numpy(np.ascontiguousarray(mask_np, dtype=np.bool_)).reshape(t.shape)
    return _Rebuilt(regen32, mask, mask_np, positions, on_cpu)


def _finish(job: _FrozenJob, r: _Rebuilt) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Write the trained values (and exceptions) into the rebuilt tensor: (tensor, mask, stored offsets)."""
    t = job.t
    regen32, mask, mask_np, positions, on_cpu = r.regen32, r.mask, r.mask_np, r.positions, r.on_cpu
    dev = regen32.device
    assert job.values is not None
    if t.flags & FLAG_DENSE:
        return _values(t, job.values, t.shape).to(dev), mask, None
    if on_cpu and positions is None:
        positions = np.flatnonzero(mask_np)
    scale = t.init.scale if t.flags & FLAG_SCALED else None
    out = (regen32 if scale is None else regen32 * scale).to(t.dtype)
    values = _values(t, job.values, (t.k + t.n_exceptions,)).to(dev)
    index = torch.from_numpy(positions) if on_cpu else positions
    delta = None
    if t.flags & FLAG_ADDITIVE:  # trained entries are R + offset, in the tensor's dtype (section 4.2)
        delta = values[: t.k].clone()
        values = torch.cat([out.view(-1)[index] + values[: t.k], values[t.k :]])
    flat = out.view(-1)
    # On the CPU, write through numpy at the mask's positions (in order, as indexing with the bool
    # mask does): torch's indexing kernels pay a thread start-up that dwarfs these small writes.
    cpu = on_cpu and out.dtype in _NUMPY_FLOATS
    if cpu:
        flat.numpy()[positions] = values[: t.k].numpy()
    else:
        flat[index] = values[: t.k]
    if t.n_exceptions:
        if job.error is not None:
            raise job.error
        pos = _exception_positions(t, job.deltas, mask_np if mask_np is not None else mask)
        if cpu:
            flat.numpy()[pos] = values[t.k :].numpy()
        else:
            flat[torch.from_numpy(pos).to(dev)] = values[t.k :]
    return out, mask, delta


_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)
#: Tests set this to run the GPU code path (device-side mask decoding, tensor positions) on CPU tensors.
_DEVICE_PATH_ON_CPU = False


def _exception_positions(t: TensorEntry, deltas: np.ndarray, mask: np.ndarray | torch.Tensor) -> np.ndarray:
    n = t.numel
    pos = np.cumsum(deltas + 1) - 1
    if pos[-1] >= n:
        raise FormatError(f"tensor {t.name!r}: exception position {int(pos[-1])} outside its {n} elements")
    on_mask = (mask.reshape(-1)[torch.from_numpy(pos).to(mask.device)].any().item() if isinstance(mask, torch.Tensor)
               else mask.reshape(-1)[pos].any())  # a device mask is checked where it is
    if on_mask:
        raise FormatError(f"tensor {t.name!r}: an exception position is a trained entry")
    return pos


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


def _tree(h: Header, tensors: list[torch.Tensor], masks: dict[int, torch.Tensor], deltas: dict[int, torch.Tensor]) -> Any:
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
            if i in deltas:
                out[t.name]["delta"] = deltas[i].cpu()
        return out

    return TreeDecoder(tensor, lambda i: h.tensors[i].name if i < len(h.tensors) else "", {"$fzt": fzt}).decode(tree)

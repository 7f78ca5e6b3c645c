"""Fuzz harnesses: one function per entry point of fzpack that parses bytes, and its seed corpus.

Each harness takes arbitrary bytes and feeds them to one parser. The contract under test
(formats/fzpack-v1.md section 6, mask-codec-v1.md section 7, fl-update-v1.md section 6): a
parser either succeeds or raises :class:`fzpack.FzpackError`; anything else escaping a harness
is a finding (the engines in ``fuzz_engine`` also flag hangs and memory growth).

The container and update harnesses parse every input twice: as it is, and with its checksums
recomputed (``fix_fzp`` / ``fix_fzu``), so mutations reach the header and stream parsers
instead of stopping at the CRC check. The codec harnesses read a small prefix (codec id, sizes,
shape) from the input, then hand the rest to the codec, so one byte string says everything a
call needs. Seeds come from ``formats/vectors`` (the vectors, legacy files and the golden
corpus), cut into each harness's input form.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import fzpack
from fzpack.codecs.lossy import decode_lossy
from fzpack.codecs.mask import decode_mask, decode_mask_positions
from fzpack.codecs.q8_index import decode_indices
from fzpack.codecs.values import LOSSY_CODECS, Q8, decode_stream, zstd_frame_length
from fzpack.container.bytes_io import Reader, Writer, decode_varints
from fzpack.container.file import crc32, read_container, read_preamble
from fzpack.container.layout import (
    DIST_IDS, DISTS, FLAG_MASK_FROM_SEED, FROZEN, PREAMBLE_SIZE, ROLE_MASKS, ROLE_VALUES, decode_header, encode_header,
)
from fzpack.errors import FzpackError
from fzpack.generator import InitSpec, generate

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "formats" / "vectors"
#: The reader budget the harnesses pass as ``max_bytes``: memory beyond a few times this is a finding.
BUDGET = 32 << 20
MAX_MASK_ENTRIES = 1 << 16  # keeps one execution in the millisecond range
MAX_RAW = 1 << 20


@dataclass(frozen=True)
class Target:
    """A harness, how its seeds are made, and the modules whose lines count as its coverage."""

    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    modules: tuple[str, ...]


# -- checksum repair: lets a mutated file reach the parsers behind the CRCs ------------------------------
def fix_fzp(data: bytes) -> bytes:
    """``data`` with its header CRC and (if the header parses) its stream CRCs recomputed; else as it is."""
    try:
        hlen, _, minor = read_preamble(data)
    except FzpackError:
        return data
    body = data[PREAMBLE_SIZE:PREAMBLE_SIZE + hlen]
    out = data[:16] + struct.pack("<I", crc32(body)) + data[20:]
    try:
        h = decode_header(body, minor)
    except FzpackError:
        return out
    pos = PREAMBLE_SIZE + hlen
    for s in h.streams:
        s.crc32 = crc32(data[pos:pos + s.stored_length])
        pos += s.stored_length
    new_body = encode_header(h)
    if len(new_body) != hlen:  # the re-encoding is canonical, so only CRC fields change; bail out otherwise
        return out
    return data[:16] + struct.pack("<I", crc32(new_body)) + new_body + data[PREAMBLE_SIZE + hlen:]


def fix_fzu(data: bytes) -> bytes:
    """An update payload with its header CRC (bytes 0-15 + body) and stream CRCs recomputed."""
    from fzpack.fl.payload import _parse_header, _read_preamble, assemble

    try:
        flags, hlen, _ = _read_preamble(memoryview(data))
    except FzpackError:
        return data
    body = data[PREAMBLE_SIZE:PREAMBLE_SIZE + hlen]
    out = data[:16] + struct.pack("<I", crc32(data[:16] + body)) + data[20:]
    try:
        fp, rnd, ex, prev, streams, entries = _parse_header(body, bool(flags & 1))
    except FzpackError:
        return out
    pos, stored = PREAMBLE_SIZE + hlen, []
    for s in streams:
        stored.append(data[pos:pos + s.stored_length])
        s.crc = crc32(stored[-1])
        pos += s.stored_length
    fixed = assemble(fp, rnd, ex, prev, streams, entries, stored)
    return fixed + data[pos:] if data[8:12] == fixed[8:12] else out


# -- harnesses --------------------------------------------------------------------------------------------
def run_container(data: bytes) -> None:
    """``restore``, ``inspect`` and ``verify`` of a `.fzp` file given as bytes."""
    for blob in dict.fromkeys([data, fix_fzp(data)]):
        for call in (lambda: fzpack.restore(blob, max_bytes=BUDGET), lambda: fzpack.inspect(blob),
                     lambda: fzpack.verify(blob, max_bytes=BUDGET)):
            try:
                call()
            except FzpackError:
                pass


def run_header(data: bytes) -> None:
    """The header body parser alone (byte 0: the minor version the preamble would declare)."""
    if data:
        decode_header(data[1:], data[0] & 1)


@functools.lru_cache(maxsize=1)
def _tree_context():
    """A decoded file with frozen, additive and plain tensors: the table a fuzzed tree refers to."""
    from fzpack.unpack import unpack

    return unpack((VECTORS / "dctps_epl.fzp").read_bytes())


def run_tree(data: bytes) -> None:
    """The object tree: byte 0 the tree codec (0 json, 1 zstd, 2 zstd-dict), the rest the tree blob."""
    from fzpack.unpack import _tree

    if not data:
        return
    un = _tree_context()
    h = un.header
    saved = h.tree_codec, h.tree
    h.tree_codec, h.tree = data[0] % 4, data[1:]  # 3: an unknown codec id
    try:
        _tree(h, un.tensors, un.masks, un.deltas)
    finally:
        h.tree_codec, h.tree = saved


def _mask_call(data: bytes) -> tuple[bytes, tuple[int, ...], int, np.ndarray | None]:
    """Input: u8 ndim, u16 dims, varint count, u8 context (0 none, 1 generated: u32 seed, u8 dist,
    f32 p0, f32 p1, string name, varint bank length, varint offset), then the payload."""
    r = Reader(data, "mask harness input")
    dims = tuple(r.u16() for _ in range(r.u8() % 5))
    n = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if n > MAX_MASK_ENTRIES:
        raise fzpack.FormatError("harness: mask too large for a fuzz execution")
    count = r.varint(what="count")
    context = None
    if r.u8() & 1:
        seed, dist, p0, p1 = r.u32(), DISTS.get(r.u8() % 6, "normal"), r.f32(), r.f32()
        name, length, offset = r.string(64), r.varint(limit=1 << 16), r.varint(limit=1 << 16)
        if dist in ("normal", "uniform", "bank"):
            try:
                spec = InitSpec(dist, p0, p1, bank="b" if dist == "bank" else "", offset=offset if dist == "bank" else 0)
                context = generate(spec, seed, name, dims, banks={"b": max(length, 1)}).numpy()
            except (ValueError, TypeError):  # the generator's own refusal of its parameters: not the codec's business
                raise fzpack.FormatError("harness: invalid context spec") from None
    return r.raw(r.remaining), dims, count, context


def run_mask(data: bytes) -> None:
    """``decode_mask`` on a payload with a shape, count and context from the input's prefix."""
    payload, dims, count, context = _mask_call(data)
    decode_mask(payload, dims, count, context)


def run_mask_kernels(data: bytes) -> None:
    """Differential: ``decode_mask`` with the compiled kernels and with numpy + constriction, and the
    GPU restore's decoder (``decode_mask_device``, run on CPU tensors) under each, must give the same
    mask and positions or all refuse (mask-codec-v1 section 7 allows no other outcome)."""
    from fzpack.codecs.mask_device import decode_mask_device
    from fzpack.generator import compiled

    payload, dims, count, context = _mask_call(data)
    kernels = ("numpy",) if compiled.unavailable_reason() is not None else ("compiled", "numpy")
    device_context = None if context is None else torch.from_numpy(context)
    results: list[tuple[np.ndarray, np.ndarray] | None] = []
    try:
        for kernel in kernels:
            compiled.set_kernel(kernel)
            for decode in (lambda: decode_mask_positions(payload, dims, count, context),
                           lambda: decode_mask_device(payload, dims, count, device_context)):
                try:
                    mask, pos = decode()
                    results.append((np.asarray(mask), np.asarray(pos)))
                except FzpackError:
                    results.append(None)
    finally:
        compiled.set_kernel(None)
    a = results[0]
    for b in results[1:]:
        if (a is None) != (b is None) or (a is not None and not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))):
            raise AssertionError(f"mask decoders disagree: {['refused' if r is None else 'decoded' for r in results]}")
    if a is None:
        raise fzpack.FormatError("refused by every decoder")
    if not np.array_equal(a[1], np.flatnonzero(a[0])):
        raise AssertionError("decoded positions are not the mask's set entries")


def _codec_prefix(data: bytes) -> tuple[int, int, int, bytes]:
    r = Reader(data, "codec harness input")
    codec, itemsize, raw_length = r.u8(), r.u8() % 17, r.varint(limit=MAX_RAW, what="raw length")
    return codec, itemsize, raw_length, r.raw(r.remaining)


def run_values(data: bytes) -> None:
    """A lossless stream codec (raw, zstd, bytegroup-zstd, planes): u8 codec, u8 itemsize, varint raw length, payload.

    Codec 3 (planes, fzpack-v1.md section 3.2.3) parses a rotation and one coded plane per item
    byte (raw, zstd or ANS): every length, frame and histogram of a hostile payload is checked.
    """
    codec, itemsize, raw_length, payload = _codec_prefix(data)
    out = decode_stream(codec % 4, payload, raw_length, max(itemsize, 1))
    assert len(out) == raw_length, "decode_stream returned another length than declared"
    if payload[:4] == b"\x28\xb5\x2f\xfd":
        zstd_frame_length(payload)


def run_lossy(data: bytes) -> None:
    """A lossy codec (cast-fp16, cast-bf16, q8): u8 codec (16 + byte % 3), u8 itemsize, varint raw length, payload."""
    codec, itemsize, raw_length, payload = _codec_prefix(data)
    out = decode_lossy(16 + codec % 3, payload, raw_length, max(itemsize, 1))
    assert len(out) == raw_length, "decode_lossy returned another length than declared"


def run_q8_index(data: bytes) -> None:
    """q8 indices alone: u16 n, u8 K - 1, then the coder byte and its data."""
    r = Reader(data, "q8 index harness input")
    n, k = r.u16(), r.u8() + 1
    idx = decode_indices(r.raw(r.remaining), n, k)
    assert idx.shape == (n,) and (n == 0 or int(idx.max()) < k), "indices out of range"


def run_index(data: bytes) -> None:
    """Exception positions (fzpack-v1.md section 4.4): u16 count, u32 numel, then the varints."""
    from fzpack.container.layout import TensorEntry
    from fzpack.unpack import _exception_positions

    r = Reader(data, "index harness input")
    count, numel = r.u16(), r.u32() % (MAX_MASK_ENTRIES + 1)
    rest = r.raw(r.remaining)
    deltas, end = decode_varints(rest, 0, count, numel, "index stream")
    if count and numel:
        t = TensorEntry(name="x", dtype=torch.float32, shape=(numel,), kind=FROZEN, n_exceptions=count)
        _exception_positions(t, deltas, np.zeros(numel, dtype=bool))
    assert end <= len(rest)


@functools.lru_cache(maxsize=1)
def fl_base():
    """The fixed base every update payload is decoded against (the golden corpus's FL base)."""
    from fzpack import fl

    return fl.Base.from_fzp((VECTORS / "corpus" / "fl_base.fzp").read_bytes())


def run_fl(data: bytes) -> None:
    """``fzpack.fl.decode_update`` against a fixed base, as it is and with its checksums recomputed."""
    from fzpack import fl

    base = fl_base()
    for blob in dict.fromkeys([data, fix_fzu(data)]):
        try:
            fl.decode_update(blob, base, max_bytes=BUDGET)
        except FzpackError:
            pass


# -- seeds ------------------------------------------------------------------------------------------------
def fzp_files() -> list[Path]:
    """Every `.fzp` under formats/vectors (vectors, legacy, golden corpus), sorted."""
    return sorted(VECTORS.rglob("*.fzp"))


def _containers() -> Iterator[tuple[object, list[memoryview], bytes]]:
    for p in fzp_files():
        data = p.read_bytes()
        h, payloads = read_container(data)
        yield h, payloads, data


def seeds_container() -> list[bytes]:
    return [data for _, _, data in _containers()]


def seeds_header() -> list[bytes]:
    return [bytes([data[9]]) + data[PREAMBLE_SIZE:PREAMBLE_SIZE + int.from_bytes(data[12:16], "little")]
            for _, _, data in _containers()]


def seeds_tree() -> list[bytes]:
    return [bytes([h.tree_codec]) + h.tree for h, _, _ in _containers()]


def _spec_prefix(h, t) -> bytes:
    w = Writer()
    w.u32(h.seed)
    w.u8(DIST_IDS[t.init.dist])
    p = list(t.init.params) + [0.0] * (2 - len(t.init.params))
    w.f32(p[0])
    w.f32(p[1])
    w.string(t.name[:64])
    w.varint(h.banks[t.init.bank][1] if t.init.dist == "bank" else 0)
    w.varint(t.init.offset)
    return w.getvalue()


def seeds_mask() -> list[bytes]:
    out = []
    for h, payloads, _ in _containers():
        pos: dict[int, int] = {}
        for t in h.tensors:
            if t.kind != FROZEN or t.flags & FLAG_MASK_FROM_SEED or t.numel > MAX_MASK_ENTRIES or len(t.shape) > 4:
                if t.kind == FROZEN and not t.flags & FLAG_MASK_FROM_SEED:
                    pos[t.mask_stream] = pos.get(t.mask_stream, 0) + t.mask_length
                continue
            start = pos.get(t.mask_stream, 0)
            pos[t.mask_stream] = start + t.mask_length
            payload = bytes(payloads[t.mask_stream][start:start + t.mask_length])
            w = Writer()
            w.u8(len(t.shape))
            for d in t.shape:
                w.u16(d)
            w.varint(t.k)
            ctx = t.init.dist in ("normal", "uniform", "bank")
            w.u8(int(ctx))
            out.append(w.getvalue() + (_spec_prefix(h, t) if ctx else b"") + payload)
    return out


def _stream_seeds(want: Callable[[int, int], bool]) -> list[bytes]:
    out = []
    for h, payloads, _ in _containers():
        for s, p in zip(h.streams, payloads):
            if want(s.codec, s.role) and s.raw_length <= MAX_RAW:
                w = Writer()
                w.u8(s.codec if s.codec < 16 else s.codec - 16)
                w.u8(s.itemsize)
                w.varint(s.raw_length)
                out.append(w.getvalue() + bytes(p))
    return out


def seeds_values() -> list[bytes]:
    return _stream_seeds(lambda codec, role: codec not in LOSSY_CODECS and role != ROLE_MASKS)


def seeds_lossy() -> list[bytes]:
    return _stream_seeds(lambda codec, role: codec in LOSSY_CODECS and role == ROLE_VALUES)


def seeds_q8_index() -> list[bytes]:
    from fzpack.codecs.q8 import parse_grid

    out = []
    for h, payloads, _ in _containers():
        for s, p in zip(h.streams, payloads):
            if s.codec == Q8:
                r = Reader(bytes(p[1:]), "q8")
                grid = parse_grid(r)
                n = s.raw_length // s.itemsize
                if n < 1 << 16:
                    out.append(struct.pack("<HB", n, len(grid.levels) - 1) + r.raw(r.remaining))
    return out


def seeds_index() -> list[bytes]:
    out = []
    for h, payloads, _ in _containers():
        for t in h.tensors:
            if t.kind == FROZEN and t.n_exceptions and t.numel <= MAX_MASK_ENTRIES:
                raw = decode_stream(h.streams[t.index_stream].codec, bytes(payloads[t.index_stream]),
                                    h.streams[t.index_stream].raw_length)
                out.append(struct.pack("<HI", t.n_exceptions, t.numel) + raw)
    return out


def seeds_fl() -> list[bytes]:
    return [p.read_bytes() for p in sorted((VECTORS / "corpus").glob("*.fzu"))]


_PARSERS = ("fzpack.container.bytes_io", "fzpack.container.layout", "fzpack.container.file", "fzpack.container.tree",
            "fzpack.unpack", "fzpack.codecs.values", "fzpack.codecs.planes", "fzpack.codecs.lossy", "fzpack.codecs.q8", "fzpack.codecs.q8_index",
            "fzpack.codecs.mask", "fzpack.codecs.mask_decode", "fzpack.codecs.mask_models", "fzpack.codecs.mask_ans",
            "fzpack.codecs.mask_gaps", "fzpack.codecs.ans_reader", "fzpack.codecs.mask_factor_fast", "fzpack.inspect", "fzpack.verify", "fzpack.restore", "fzpack.fl.payload")
_MASK = ("fzpack.codecs.mask", "fzpack.codecs.mask_decode", "fzpack.codecs.mask_models", "fzpack.codecs.mask_ans",
         "fzpack.codecs.mask_gaps", "fzpack.codecs.ans_reader", "fzpack.codecs.mask_factor_fast", "fzpack.codecs.mask_device")

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("container", run_container, seeds_container, _PARSERS[:-1]),
    Target("header", run_header, seeds_header, ("fzpack.container.bytes_io", "fzpack.container.layout")),
    Target("tree", run_tree, seeds_tree, ("fzpack.container.tree", "fzpack.unpack", "fzpack.codecs.values")),
    Target("mask", run_mask, seeds_mask, _MASK),
    Target("mask_kernels", run_mask_kernels, seeds_mask, _MASK),
    Target("values", run_values, seeds_values, ("fzpack.codecs.values", "fzpack.codecs.planes")),
    Target("lossy", run_lossy, seeds_lossy, ("fzpack.codecs.lossy", "fzpack.codecs.q8", "fzpack.codecs.q8_index",
                                             "fzpack.codecs.values")),
    Target("q8_index", run_q8_index, seeds_q8_index, ("fzpack.codecs.q8_index",)),
    Target("index", run_index, seeds_index, ("fzpack.container.bytes_io", "fzpack.unpack")),
    Target("fl", run_fl, seeds_fl, ("fzpack.fl.payload", "fzpack.codecs.values", "fzpack.codecs.lossy", "fzpack.codecs.q8",
                                    "fzpack.codecs.q8_index", "fzpack.container.bytes_io")),
)}


#: Tokens the mutators splice in (libFuzzer's -dict): tags, magic numbers, ids a random byte rarely hits.
TOKENS = [b"\x89FZP\r\n\x1a\n", b"\x89FZU\r\n\x1a\n", b"\x28\xb5\x2f\xfd", b'"$t"', b'"$sd"', b'"$d"', b'"$o":1',
          b'"$meta"', b'"$tuple"', b'"$f"', b'"$bytes"', b'"$ba":1', b'"$dtype"', b'"$size"', b'"$device"', b'"$fzt"',
          b'"fzpack"', b'"state_dict"', b'"method"', b'"lc-frozen"', b'"dctps"', b'"freezenet"', b'"nan"', b'"-inf"',
          b"NaN", b"1e999", b"-0.0", b"[[", b"{}", b"\\ud800", b"\x00\x00\x80\x7f", b"\x00\x00\xc0\x7f"]


def run_mux(data: bytes) -> None:
    """Every target in one harness (byte 0 picks it): one libFuzzer process covers them all (the CI smoke run)."""
    if data:
        names = list(TARGETS)
        TARGETS[names[data[0] % len(names)]].run(data[1:])


def seeds_mux() -> list[bytes]:
    return [bytes([i]) + s for i, name in enumerate(TARGETS) for s in TARGETS[name].seeds()]


MUX = Target("mux", run_mux, seeds_mux, tuple(sorted({m for t in TARGETS.values() for m in t.modules})))


def target(name: str) -> Target:
    """A target by name: one of TARGETS, or "mux" (all of them behind a selector byte)."""
    return MUX if name == "mux" else TARGETS[name]


def check(target: str, data: bytes) -> None:
    """Run one harness the way the engines do: a FzpackError is a pass, anything else propagates."""
    try:
        globals()["target"](target).run(data)
    except FzpackError:
        pass

"""The fzpack v1 header: dataclasses and their byte encoding (formats/fzpack-v1.md sections 2-5).

The header is parsed completely and validated (every count, index, length and size) before a
single stream byte is decoded, so a lying header is rejected without allocating what it claims.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from fzpack.container.bytes_io import Reader, Writer
from fzpack.errors import FormatError

MAGIC = b"\x89FZP\r\n\x1a\n"
VERSION = (1, 2)  # the newest this code reads; a writer records the oldest minor its file needs
PREAMBLE_SIZE = 20  # magic 8, major 1, minor 1, flags 2, header length 4, header crc 4
MAX_HEADER_BYTES = 64 << 20
MAX_NDIM = 32
MAX_DIM = 1 << 48
MAX_NUMEL = 1 << 48  # per tensor; checked while the dims are read, so nothing downstream can overflow 64 bits
MAX_NAME_BYTES = 4096

GENERATOR_NONE = 0
GENERATOR_PHILOX = 1  # formats/generator-v1.md
GENERATOR_NAMES = {GENERATOR_NONE: "none", GENERATOR_PHILOX: "fzpack-philox4x64-10/v1"}

# Tensor kinds (section 4).
PLAIN, FROZEN, ALIAS = 0, 1, 2
# FROZEN flags.
FLAG_DENSE = 1  # every element stored: cheaper than coding its exceptions
FLAG_MASK_FROM_SEED = 2  # mask == random_mask(seed, name, shape, k): zero bytes
FLAG_SCALED = 4  # frozen entries are float32(generate(spec) * scale), scale an f32 after the params
FLAG_MASK_PER_ROW = 8  # 1.1, with MASK_FROM_SEED: mask == random_mask_rows(...) ("equal per filter")
FLAG_ADDITIVE = 16  # 1.1: trained entries are R[i] + v (DCTpS offsets) instead of v
KNOWN_FLAGS = FLAG_DENSE | FLAG_MASK_FROM_SEED | FLAG_SCALED | FLAG_MASK_PER_ROW | FLAG_ADDITIVE
FLAGS_1_1 = FLAG_MASK_PER_ROW | FLAG_ADDITIVE

# Stream roles and codecs (section 3).
ROLE_VALUES, ROLE_MASKS, ROLE_INDEX = 0, 1, 2
ROLE_NAMES = {ROLE_VALUES: "values", ROLE_MASKS: "masks", ROLE_INDEX: "index"}

# Distribution ids of the frozen init (formats/generator-v1.md) and how many f32 params each has.
DISTS = {0: "zeros", 1: "normal", 2: "uniform", 3: "pm", 4: "bank", 5: "dct"}
DIST_IDS = {v: k for k, v in DISTS.items()}
DIST_NPARAMS = {"zeros": 0, "normal": 2, "uniform": 2, "pm": 1, "bank": 1, "dct": 0}
DISTS_1_1 = frozenset({"dct"})

# dtype table (section 4.1); torch dtypes without numpy twins travel as raw bits.
DTYPES: dict[int, torch.dtype] = {
    1: torch.float32, 2: torch.float16, 3: torch.bfloat16, 4: torch.float64,
    5: torch.int64, 6: torch.int32, 7: torch.int16, 8: torch.int8, 9: torch.uint8,
    10: torch.bool, 11: torch.complex64, 12: torch.complex128,
    13: torch.uint16, 14: torch.uint32, 15: torch.uint64,
    16: torch.float8_e4m3fn, 17: torch.float8_e5m2,
}
DTYPE_IDS = {v: k for k, v in DTYPES.items()}
FLOAT_DTYPES = {torch.float32, torch.float16, torch.bfloat16, torch.float64}


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


@dataclass
class StreamEntry:
    codec: int
    role: int
    itemsize: int
    raw_length: int
    stored_length: int
    crc32: int


@dataclass
class InitEntry:
    dist: str
    params: tuple[float, ...] = ()
    bank: int = 0  # index into Header.banks, dist "bank" only
    offset: int = 0
    scheme: int = 0  # index into Header.schemes
    scale: float | None = None  # FLAG_SCALED only


@dataclass
class TensorEntry:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    kind: int
    stream: int = 0  # PLAIN / FROZEN: the values stream
    target: int = 0  # ALIAS: index of an earlier tensor
    flags: int = 0
    init: InitEntry | None = None
    k: int = 0  # trained entries
    mask_stream: int = 0
    mask_length: int = 0
    n_exceptions: int = 0
    index_stream: int = 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def stored_count(self) -> int:
        """Elements this tensor takes from its values stream."""
        if self.kind == PLAIN:
            return self.numel
        if self.kind == FROZEN:
            return self.numel if self.flags & FLAG_DENSE else self.k + self.n_exceptions
        return 0


@dataclass
class Header:
    generator: int = GENERATOR_NONE
    seed: int = 0
    schemes: list[str] = field(default_factory=list)
    banks: list[tuple[str, int]] = field(default_factory=list)
    streams: list[StreamEntry] = field(default_factory=list)
    tensors: list[TensorEntry] = field(default_factory=list)
    tree_codec: int = 0
    tree: bytes = b""


def minor_version(h: Header, mask_models: Iterable[int] = ()) -> int:
    """The oldest minor version that can read ``h``: 2 if it uses a 1.2 feature, 1 if a 1.1 one, else 0.

    ``mask_models`` are the model ids (byte 0) of the file's coded mask payloads: they live in the
    masks streams, not in the header, so a reader passes them once the streams are checked
    (:func:`check_minor`). 1.2 features: stream codec 3 (planes), mask model 4 (GAPS).
    Writing the oldest sufficient minor keeps files without new features readable by older readers
    (and the 1.0 / 1.1 test vectors byte-identical).
    """
    from fzpack.codecs.values import CODECS_1_2

    if any(s.codec in CODECS_1_2 for s in h.streams) or any(m in MASK_MODELS_1_2 for m in mask_models):
        return 2
    for t in h.tensors:
        if t.kind == FROZEN and (t.flags & FLAGS_1_1 or (t.init is not None and t.init.dist in DISTS_1_1)):
            return 1
    return 0


#: Mask models (formats/mask-codec-v1.md) a file may use only from minor 2 on: 4 GAPS.
MASK_MODELS_1_2 = frozenset({4})
_MINOR_FEATURES = {1: "distribution dct, per-row or additive frozen tensors", 2: "stream codec 3 (planes) or mask model 4 (GAPS)"}


def has_coded_masks(h: Header) -> bool:
    """Does a frozen tensor of ``h`` store a mask payload (whose model id may raise the needed minor)?"""
    return any(t.kind == FROZEN and not t.flags & FLAG_MASK_FROM_SEED and t.mask_length for t in h.tensors)


def mask_models(h: Header, byte_at: Callable[[int, int], int | None]) -> set[int]:
    """The model ids of ``h``'s mask payloads; ``byte_at(stream, offset)`` reads one stored byte (None: none there).

    Payloads lie back to back in their masks stream in tensor-table order (section 3.3); the
    header was validated, so every offset is inside its stream.
    """
    cursors: dict[int, int] = {}
    models: set[int] = set()
    for t in h.tensors:
        if t.kind == FROZEN and not t.flags & FLAG_MASK_FROM_SEED and t.mask_length:
            at = cursors.get(t.mask_stream, 0)
            model = byte_at(t.mask_stream, at)
            if model is not None:
                models.add(model)
            cursors[t.mask_stream] = at + t.mask_length
    return models


def check_minor(h: Header, minor: int, mask_models: Iterable[int] | None = None) -> None:
    """The declared minor must be exactly the oldest one the file's features need (section 2.1).

    With ``mask_models`` None (only the header read so far) a declared minor above what the header
    needs is let through when the file has coded masks (a GAPS payload needs 1.2); the caller
    checks again with the models once it has read them (container.file, after the checksums).
    """
    needed = minor_version(h, mask_models or ())
    if needed > minor:
        raise FormatError(f"the file says version 1.{minor} but uses 1.{needed} features ({_MINOR_FEATURES[needed]})")
    if needed < minor and (mask_models is not None or not has_coded_masks(h)):
        # the minor is the oldest sufficient one: also what catches a flipped minor byte
        raise FormatError(f"the file says version 1.{minor} but uses no 1.{minor} feature (a writer records 1.{needed}): "
                          "corrupted preamble?")


def encode_header(h: Header) -> bytes:
    w = Writer()
    w.u8(h.generator)
    w.u32(h.seed)
    w.varint(len(h.schemes))
    for s in h.schemes:
        w.string(s)
    w.varint(len(h.banks))
    for name, length in h.banks:
        w.string(name)
        w.varint(length)
    w.varint(len(h.streams))
    for s in h.streams:
        w.u8(s.codec)
        w.u8(s.role)
        w.u8(s.itemsize)
        w.varint(s.raw_length)
        w.varint(s.stored_length)
        w.u32(s.crc32)
    w.varint(len(h.tensors))
    for t in h.tensors:
        _encode_tensor(w, t)
    w.u8(h.tree_codec)
    w.blob(h.tree)
    return w.getvalue()


def _encode_tensor(w: Writer, t: TensorEntry) -> None:
    w.string(t.name)
    w.u8(DTYPE_IDS[t.dtype])
    w.u8(len(t.shape))
    for d in t.shape:
        w.varint(d)
    w.u8(t.kind)
    if t.kind == ALIAS:
        w.varint(t.target)
        return
    if t.kind == FROZEN:
        assert t.init is not None
        w.u8(t.flags)
        w.u8(DIST_IDS[t.init.dist])
        if t.init.dist == "bank":
            w.varint(t.init.bank)
            w.varint(t.init.offset)
        for p in t.init.params:
            w.f32(p)
        if t.flags & FLAG_SCALED:
            assert t.init.scale is not None
            w.f32(t.init.scale)
        w.varint(t.init.scheme)
        w.varint(t.k)
        if not t.flags & FLAG_MASK_FROM_SEED:
            w.varint(t.mask_stream)
            w.varint(t.mask_length)
        w.varint(t.n_exceptions)
        if t.n_exceptions:
            w.varint(t.index_stream)
    w.varint(t.stream)


def decode_header(body: bytes, minor: int = VERSION[1]) -> Header:
    """Parse and validate a header body of a file of version 1.``minor``. Raises FormatError on any inconsistency."""
    r = Reader(body, "header")
    h = Header()
    h.generator = r.u8()
    if h.generator not in GENERATOR_NAMES:
        raise FormatError(f"unknown generator id {h.generator} (this fzpack knows {sorted(GENERATOR_NAMES)})")
    h.seed = r.u32()
    n = r.varint(limit=r.remaining, what="scheme count")
    h.schemes = [r.string(256, "scheme name") for _ in range(n)]
    n = r.varint(limit=r.remaining, what="bank count")
    for _ in range(n):
        name = r.string(MAX_NAME_BYTES, "bank name")
        h.banks.append((name, r.varint(limit=MAX_DIM, what="bank length")))
    if len({b[0] for b in h.banks}) != len(h.banks):
        raise FormatError("header: duplicate bank names")
    n = r.varint(limit=r.remaining // 8, what="stream count")
    for _ in range(n):
        s = StreamEntry(r.u8(), r.u8(), r.u8(), r.varint(what="raw length"), r.varint(what="stored length"), r.u32())
        if s.role not in ROLE_NAMES:
            raise FormatError(f"header: unknown stream role {s.role}")
        h.streams.append(s)
    n = r.varint(limit=r.remaining // 4, what="tensor count")
    for i in range(n):
        h.tensors.append(_decode_tensor(r, h, i))
    h.tree_codec = r.u8()
    h.tree = r.blob(MAX_HEADER_BYTES, "tree")
    r.expect_end()
    _validate(h)
    check_minor(h, minor)  # the mask models are checked with the streams (container.file)
    return h


def _decode_tensor(r: Reader, h: Header, index: int) -> TensorEntry:
    name = r.string(MAX_NAME_BYTES, "tensor name")
    code = r.u8()
    if code not in DTYPES:
        raise FormatError(f"tensor {name!r}: unknown dtype id {code}")
    ndim = r.u8()
    if ndim > MAX_NDIM:
        raise FormatError(f"tensor {name!r}: {ndim} dimensions exceed the limit of {MAX_NDIM}")
    shape = tuple(r.varint(limit=MAX_DIM, what="dimension") for _ in range(ndim))
    _check_numel(name, shape)
    t = TensorEntry(name=name, dtype=DTYPES[code], shape=shape, kind=r.u8())
    if t.kind == ALIAS:
        t.target = r.varint(limit=max(index - 1, 0), what="alias target")
        return t
    if t.kind == FROZEN:
        t.flags = r.u8()
        if t.flags & ~KNOWN_FLAGS:
            raise FormatError(f"tensor {name!r}: unknown flags {t.flags:#x}")
        dist_id = r.u8()
        if dist_id not in DISTS:
            raise FormatError(f"tensor {name!r}: unknown distribution id {dist_id}")
        init = InitEntry(dist=DISTS[dist_id])
        if init.dist == "bank":
            init.bank = r.varint(limit=max(len(h.banks) - 1, 0), what="bank index")
            if not h.banks:
                raise FormatError(f"tensor {name!r} draws from a bank but the header has none")
            init.offset = r.varint(limit=MAX_DIM, what="bank offset")
        init.params = tuple(r.f32() for _ in range(DIST_NPARAMS[init.dist]))
        if t.flags & FLAG_SCALED:
            init.scale = r.f32()
            if not math.isfinite(init.scale):
                raise FormatError(f"tensor {name!r}: non-finite scale")
        init.scheme = r.varint(limit=max(len(h.schemes) - 1, 0), what="scheme index")
        t.init = init
        t.k = r.varint(limit=MAX_DIM, what="trained count")
        if not t.flags & FLAG_MASK_FROM_SEED:
            t.mask_stream = _stream_ref(r, h, "mask stream")
            t.mask_length = r.varint(what="mask length")
        t.n_exceptions = r.varint(limit=MAX_DIM, what="exception count")
        if t.n_exceptions:
            t.index_stream = _stream_ref(r, h, "index stream")
    elif t.kind != PLAIN:
        raise FormatError(f"tensor {name!r}: unknown kind {t.kind}")
    t.stream = _stream_ref(r, h, "values stream")
    return t


def _stream_ref(r: Reader, h: Header, what: str) -> int:
    """A stream index (section 4): below the stream count, so a file without streams has no valid index."""
    if not h.streams:
        raise FormatError(f"header: a tensor refers to a {what} but the file declares no streams")
    return r.varint(limit=len(h.streams) - 1, what=what)


def _check_numel(name: str, shape: tuple[int, ...]) -> None:
    """Checked product of the dims (section 4): stop as soon as the running product passes MAX_NUMEL."""
    numel = 1
    for d in shape:
        numel *= d
        if numel > MAX_NUMEL:
            raise FormatError(f"tensor {name!r}: shape {list(shape)} has more than 2**48 elements")


def mask_payload_limit(numel: int) -> int:
    """Largest mask payload any valid mask of ``numel`` entries can have (mask-codec-v1.md section 7)."""
    return 2 * (numel + 16 * numel + 4096) + 8192


def _validate(h: Header) -> None:
    """Cross-checks that need the whole header: roles, item sizes, stream sums, names."""
    names = [t.name for t in h.tensors]
    if len(set(names)) != len(names):
        raise FormatError("header: duplicate tensor names")
    used = [0] * len(h.streams)
    for t in h.tensors:
        if t.kind == ALIAS:
            tgt = h.tensors[t.target]
            if tgt.kind == ALIAS or tgt.dtype != t.dtype or tgt.shape != t.shape:
                raise FormatError(f"tensor {t.name!r}: alias target does not match")
            continue
        n = t.numel
        if t.kind == FROZEN:
            if t.dtype not in FLOAT_DTYPES:
                raise FormatError(f"tensor {t.name!r}: frozen tensors must be floating point")
            if h.generator == GENERATOR_NONE:
                raise FormatError(f"tensor {t.name!r} is frozen but the file names no generator")
            if t.k > n or t.n_exceptions > n - t.k:
                raise FormatError(f"tensor {t.name!r}: trained/exception counts exceed its size {n}")
            if t.flags & FLAG_DENSE and t.n_exceptions:
                raise FormatError(f"tensor {t.name!r}: dense tensors carry no exceptions")
            if t.flags & FLAG_MASK_PER_ROW and not t.flags & FLAG_MASK_FROM_SEED:
                raise FormatError(f"tensor {t.name!r}: MASK_PER_ROW needs MASK_FROM_SEED")
            if t.flags & FLAG_ADDITIVE and t.flags & FLAG_DENSE:
                raise FormatError(f"tensor {t.name!r}: ADDITIVE and DENSE exclude each other")
            if t.init is not None and t.init.dist == "dct" and len(t.shape) < 2:
                raise FormatError(f"tensor {t.name!r}: dist dct needs at least 2 dimensions")
            if not t.flags & FLAG_MASK_FROM_SEED:
                if t.mask_length > mask_payload_limit(n):
                    raise FormatError(f"tensor {t.name!r}: a {t.mask_length}-byte mask payload exceeds the codec's "
                                      f"limit for {n} entries")
                _use(h, used, t.mask_stream, ROLE_MASKS, 1, t.mask_length, t.name)
            if t.n_exceptions:
                _check_role(h, t.index_stream, ROLE_INDEX, t.name)
                used[t.index_stream] += t.n_exceptions
        _use(h, used, t.stream, ROLE_VALUES, itemsize(t.dtype), t.stored_count * itemsize(t.dtype), t.name)
    for i, s in enumerate(h.streams):
        if s.role == ROLE_MASKS and (s.codec != 0 or s.stored_length != s.raw_length):
            # mask payloads are entropy-coded already: stored as they are, so the header alone bounds them
            raise FormatError(f"masks stream {i}: codec must be 0 and stored_length must equal raw_length "
                              f"(codec {s.codec}, {s.stored_length} stored vs {s.raw_length} raw bytes)")
        if s.role == ROLE_INDEX and not used[i] <= s.raw_length <= 9 * used[i]:
            raise FormatError(f"index stream {i}: {s.raw_length} bytes cannot hold its {used[i]} positions")
        if s.role != ROLE_INDEX and used[i] != s.raw_length:
            raise FormatError(
                f"stream {i}: header says {s.raw_length} bytes but its tensors need {used[i]}"
            )


def _check_role(h: Header, i: int, role: int, name: str) -> StreamEntry:
    s = h.streams[i]
    if s.role != role:
        raise FormatError(f"tensor {name!r}: stream {i} is a {ROLE_NAMES[s.role]} stream, expected {ROLE_NAMES[role]}")
    return s


def _use(h: Header, used: list[int], i: int, role: int, size: int, nbytes: int, name: str) -> None:
    s = _check_role(h, i, role, name)
    if s.itemsize != size:
        raise FormatError(f"tensor {name!r}: stream {i} holds {s.itemsize}-byte items, expected {size}")
    used[i] += nbytes

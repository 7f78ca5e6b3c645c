"""Update payloads: a model's trained values as a small checksummed message (formats/fl-update-v1.md).

    offset  size  field
    0       8     magic 89 46 5A 55 0D 0A 1A 0A ("\\x89FZU\\r\\n\\x1a\\n")
    8       1     major version (1)
    9       1     minor version (0)
    10      2     flags (bit 0: DELTA)
    12      4     header length H (u32 LE)
    16      4     CRC-32 of bytes 0-15 followed by the header body
    20      H     header body: base fingerprint, round, examples, [previous digest], streams, entry map
    20+H    ...   stream payloads, back to back, nothing after them

The values follow the base's layout (base.py); the payload only says which stream each entry is
read from, so a payload for another base, or one whose sizes disagree with the layout, is refused
before a byte of it is decoded. Streams reuse the container's codecs: raw / zstd / bytegroup-zstd,
and the opt-in lossy cast-fp16 / cast-bf16 / q8 (formats/fzpack-v1.md section 3.2).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
from torch import nn

from fzpack.codecs.lossy import CODEC_DTYPES, applies, check_mode, check_values, encode_lossy, payload_dtype
from fzpack.codecs.values import CODEC_NAMES, LOSSY_CODECS, RAW, decode_stream, encode_stream
from fzpack.container.bytes_io import Reader, Writer
from fzpack.container.file import crc32
from fzpack.container.layout import DTYPE_IDS, DTYPES
from fzpack.container.layout import MAGIC as FZP_MAGIC
from fzpack.errors import FormatError, FzpackError, PayloadError
from fzpack.fl.base import Base
from fzpack.fl.layout import PART_PLAIN, PART_TRAINED, LayoutEntry
from fzpack.tensor_bits import from_bytes, to_numpy_bytes
from fzpack.unpack import DEFAULT_MAX_BYTES

__all__ = ["MAGIC", "PayloadHeader", "Update", "apply_update", "decode_update", "encode_update", "read_header",
           "values_digest"]

MAGIC = b"\x89FZU\r\n\x1a\n"
VERSION = (1, 0)
PREAMBLE_SIZE = 20
FLAG_DELTA = 1
KNOWN_FLAGS = FLAG_DELTA
MAX_HEADER_BYTES = 64 << 20
VALUES_DOMAIN = b"fzpack-fl-values/1"  # 18 bytes, section 2.3
_STREAM_ENTRY_MIN = 8  # codec, dtype, two 1-byte varints, crc32
#: The stream codecs of this format's version 1.0 (fl-update-v1.md section 4); the container's newer
#: codecs (planes, 3: fzpack-v1.md 1.2) are not part of it and are rejected like any unknown id.
STREAM_CODECS = frozenset({0, 1, 2, 16, 17, 18})
_U64 = 1 << 64

Values = Union[Sequence[torch.Tensor], "Update", Base, nn.Module]


@dataclass
class Update:
    """A decoded payload: the values in layout order (absolute, deltas already applied) and its metadata.

    Attributes:
        values: one CPU tensor per layout entry.
        round: the sender's round number.
        examples: the sender's example count (the FedAvg weight).
        base: the base it was decoded against.
        delta: whether the payload carried deltas from previous values.
        codecs: each stream's codec name (a lossy one says ``cast-fp16``, ``cast-bf16`` or ``q8``).
    """

    values: list[torch.Tensor] = field(repr=False)
    round: int
    examples: int
    base: Base = field(repr=False)
    delta: bool = False
    codecs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def lossy(self) -> bool:
        """True when any stream used a lossy codec (the values are then within its bound, not exact)."""
        return any(c in ("cast-fp16", "cast-bf16", "q8") for c in self.codecs)

    def digest(self) -> bytes:
        """``values_digest(base, values)``: what a delta made against these values names."""
        return values_digest(self.base, self.values)


def values_digest(base: Base, values: Sequence[torch.Tensor]) -> bytes:
    """SHA-256 naming a set of values of ``base`` (section 2.3): a delta payload carries its previous's.

    Args:
        base: the base the values belong to (its fingerprint is hashed first).
        values: in layout order.

    Returns:
        32 bytes.

    Example:
        >>> values_digest(base, base.values()).hex()[:8]
    """
    h = hashlib.sha256(VALUES_DOMAIN + base.fingerprint)
    for v in base.check_values(values):
        h.update(to_numpy_bytes(v))
    return h.digest()


def _as_values(x: Values, base: Base, what: str) -> list[torch.Tensor]:
    if isinstance(x, Update):
        if x.base.fingerprint != base.fingerprint:
            raise FzpackError(f"{what}: that update belongs to another base")
        return x.values
    if isinstance(x, Base):
        if x.fingerprint != base.fingerprint:
            raise FzpackError(f"{what}: that is another base")
        return x.values()
    if isinstance(x, nn.Module):
        return base.values_of(x)
    if isinstance(x, torch.Tensor) or not isinstance(x, Sequence):
        raise FzpackError(f"{what} must be a model, an Update, a Base or a list of tensors in layout order")
    # numpy arrays too (what Flower's ArrayRecord gives back), as zero-copy tensors
    return base.check_values([v.detach().cpu() if isinstance(v, torch.Tensor) else torch.from_numpy(v)
                              if isinstance(v, np.ndarray) else v for v in x])


def _lossy_candidate(e: LayoutEntry) -> bool:
    """The writer's policy: weights travel lossily when asked, vectors and scalars stay exact (section 5.3)."""
    return e.dtype.is_floating_point and (e.part == PART_TRAINED or (e.part == PART_PLAIN and len(e.shape) >= 2))


def _xor(a: bytes, b: bytes) -> bytes:
    return (np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).tobytes()


def _u64(v: int, what: str) -> bytes:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < _U64:
        raise FzpackError(f"{what} must be an integer in [0, 2**64), got {v!r}")
    return struct.pack("<Q", v)


def encode_update(model_or_values: Values, base: Base, *, round: int = 0, examples: int = 0, values: str = "lossless",
                  delta_from: Values | None = None) -> bytes:
    """The payload carrying a model's trained values for ``base`` (formats/fl-update-v1.md).

    Args:
        model_or_values: a training-form model of the base, or values in layout order (a list,
            an ``Update``, or a ``Base`` for its own values).
        base: the shared base.
        round: round number (u64), recorded for the receiver.
        examples: number of training examples behind these values: the FedAvg weight (u64).
        values: ``lossless`` (default), or ``fp16``, ``bf16``, ``q8``: an opt-in lossy codec for
            the weight entries (trained values, plain tensors of 2 or more dims); biases,
            BatchNorm, scales and integer buffers stay exact. Each stream keeps the lossless
            coding when that is not larger.
        delta_from: previous global values (same forms as ``model_or_values``): the payload then
            carries differences from them - bitwise XOR in lossless streams (exact), arithmetic
            ``v - p`` in lossy ones - and the previous values' digest, so a receiver holding
            other previous values refuses it instead of decoding garbage.

    Returns:
        The payload bytes.

    Example:
        >>> blob = encode_update(model, base, round=3, examples=600)
        >>> blob = encode_update(model, base, round=3, examples=600, values="q8", delta_from=global_values)
    """
    check_mode(values)
    vals = _as_values(model_or_values, base, "model_or_values")
    prev = _as_values(delta_from, base, "delta_from") if delta_from is not None else None
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(base.layout):
        lossy = values != "lossless" and _lossy_candidate(e) and applies(values, e.dtype)
        # q8 quantises per stream: one stream per entry gives each weight its own grid, as the container does.
        key = ("lossy", e.dtype, i if values == "q8" else -1) if lossy else ("exact", e.dtype, -1)
        groups.setdefault(key, []).append(i)
    entry_stream = [0] * len(base.layout)
    streams, stored = [], []
    for s, ((kind, dtype, _), members) in enumerate(groups.items()):
        for i in members:
            entry_stream[i] = s
        size = torch.empty((), dtype=dtype).element_size()
        parts = [to_numpy_bytes(vals[i]) for i in members]
        if prev is not None:
            parts = [_xor(p, to_numpy_bytes(prev[i])) for p, i in zip(parts, members)]
        raw = b"".join(parts)
        codec, payload = encode_stream(raw, size)
        if kind == "lossy":
            diffs = [vals[i] - prev[i] if prev is not None else vals[i] for i in members]
            for i, d in zip(members, diffs):
                check_values(values, base.layout[i].label, d)
            coded = encode_lossy(values, b"".join(to_numpy_bytes(d) for d in diffs), dtype)
            if coded is not None and len(coded[1]) < len(payload):  # lossless wins ties and tiny streams
                codec, payload = coded
        streams.append(_Stream(codec, dtype, len(raw), len(payload), crc32(payload)))
        stored.append(payload)
    digest = values_digest(base, prev) if prev is not None else None
    return assemble(base.fingerprint, _u64(round, "round"), _u64(examples, "examples"), digest, streams, entry_stream, stored)


@dataclass
class _Stream:
    codec: int
    dtype: torch.dtype
    raw_length: int
    stored_length: int
    crc: int


def assemble(fingerprint: bytes, round: int | bytes, examples: int | bytes, previous: bytes | None, streams: list[_Stream],
             entry_stream: list[int], stored: list[bytes]) -> bytes:
    """Serialise a payload from its parts as they are (lengths and CRCs are the caller's; tests forge with it)."""
    w = Writer()
    w.raw(fingerprint)
    w.raw(round if isinstance(round, bytes) else struct.pack("<Q", round))
    w.raw(examples if isinstance(examples, bytes) else struct.pack("<Q", examples))
    if previous is not None:
        w.raw(previous)
    w.varint(len(streams))
    for s in streams:
        w.u8(s.codec)
        w.u8(DTYPE_IDS[s.dtype])
        w.varint(s.raw_length)
        w.varint(s.stored_length)
        w.u32(s.crc)
    w.varint(len(entry_stream))
    for i in entry_stream:
        w.varint(i)
    body = w.getvalue()
    flags = FLAG_DELTA if previous is not None else 0
    pre = MAGIC + struct.pack("<BBHI", VERSION[0], VERSION[1], flags, len(body))
    return b"".join([pre, struct.pack("<I", crc32(pre + body)), body, *stored])


def _read_preamble(view: memoryview) -> tuple[int, int, int]:
    if len(view) < PREAMBLE_SIZE:
        raise PayloadError(f"payload is {len(view)} bytes, too short to be an fzpack update")
    magic = bytes(view[:8])
    if magic == FZP_MAGIC:
        raise PayloadError("these bytes are a .fzp file (a base?), not an update payload")
    if magic != MAGIC:
        raise PayloadError("not an fzpack update payload (bad magic bytes)")
    major, minor, flags, hlen, hcrc = struct.unpack("<BBHII", view[8:PREAMBLE_SIZE])
    if (major, minor) > VERSION:
        raise PayloadError(f"update format {major}.{minor} is newer than this fzpack understands "
                           f"({VERSION[0]}.{VERSION[1]}); upgrade fzpack")
    if major != VERSION[0]:
        raise PayloadError(f"unsupported update format version {major}.{minor}")
    if flags & ~KNOWN_FLAGS:
        raise PayloadError(f"unknown payload flags {flags:#06x}")
    if hlen > MAX_HEADER_BYTES or hlen > len(view) - PREAMBLE_SIZE:
        raise PayloadError(f"header length {hlen} does not fit in a payload of {len(view)} bytes")
    return flags, hlen, hcrc


def _parse_header(body: bytes, delta: bool) -> tuple[bytes, int, int, bytes | None, list[_Stream], list[int]]:
    r = Reader(body, "update header")
    fingerprint = r.raw(32)
    round_, examples = struct.unpack("<QQ", r.raw(16))
    previous = r.raw(32) if delta else None
    streams = []
    for _ in range(r.varint(limit=r.remaining // _STREAM_ENTRY_MIN, what="stream count")):
        codec, dtype_id = r.u8(), r.u8()
        if codec not in STREAM_CODECS:
            raise PayloadError(f"unknown stream codec id {codec}")
        if dtype_id not in DTYPES:
            raise PayloadError(f"unknown dtype id {dtype_id}")
        raw_length = r.varint(what="raw_length")
        stored_length = r.varint(what="stored_length")
        streams.append(_Stream(codec, DTYPES[dtype_id], raw_length, stored_length, r.u32()))
    n = r.varint(limit=r.remaining, what="entry count")
    entry_stream = [r.varint(limit=max(len(streams) - 1, 0), what="stream index") for _ in range(n)]
    if n and not streams:
        raise PayloadError("entries name streams but the payload has none")
    r.expect_end()
    return fingerprint, round_, examples, previous, streams, entry_stream



@dataclass(frozen=True)
class PayloadHeader:
    """What a payload's header says (section 4), read without decoding a value.

    Attributes:
        base: the fingerprint of the base it is for (32 bytes).
        round: the sender's round number.
        examples: the sender's example count.
        previous: for a delta payload, the values digest (section 2.3) it was made against; else None.
    """

    base: bytes
    round: int
    examples: int
    previous: bytes | None

    @property
    def delta(self) -> bool:
        return self.previous is not None


def _checked_header(view: memoryview) -> tuple[int, tuple[bytes, int, int, bytes | None, list[_Stream], list[int]]]:
    """Validation steps 1-2: preamble, header CRC, exact parse of the header body. Returns (H, parsed header)."""
    flags, hlen, hcrc = _read_preamble(view)
    body = bytes(view[PREAMBLE_SIZE : PREAMBLE_SIZE + hlen])
    # The CRC covers the preamble's first 16 bytes too: a flipped DELTA flag would otherwise shift the parse.
    if crc32(bytes(view[:16]) + body) != hcrc:
        raise PayloadError("update header checksum mismatch: the payload is corrupted")
    try:
        return hlen, _parse_header(body, bool(flags & FLAG_DELTA))
    except PayloadError:
        raise
    except FormatError as e:
        raise PayloadError(str(e)) from e


def read_header(payload: bytes | bytearray | memoryview) -> PayloadHeader:
    """The header of a payload, checked (preamble, header CRC, exact parse) but not its values.

    A receiver can tell from it, before decoding, which base a payload is for and, for a delta,
    which previous values it needs (compare ``previous`` with ``values_digest(base, held)``).

    Raises:
        PayloadError: as steps 1-2 of formats/fl-update-v1.md section 6.

    Example:
        >>> h = read_header(blob)
        >>> h.delta and h.previous != values_digest(base, held)   # ask for the full values
    """
    _, (fingerprint, round_, examples, previous, _, _) = _checked_header(memoryview(payload).cast("B"))
    return PayloadHeader(fingerprint, round_, examples, previous)


def decode_update(payload: bytes | bytearray | memoryview, base: Base, *, previous: Values | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> Update:
    """Check and decode a payload against ``base`` (validation order: formats/fl-update-v1.md section 6).

    Args:
        payload: the bytes ``encode_update`` made.
        base: the base the receiver holds; a payload for another base is refused.
        previous: for a delta payload, the values it was made against (a list, an ``Update``, a
            training-form model or a ``Base``); default the base's own values. Their digest must
            match the one in the payload.
        max_bytes: refuse payloads whose decoded values would need more memory than this.

    Returns:
        An :class:`Update` with absolute values in layout order.

    Raises:
        PayloadError: truncated, padded, corrupted (CRC), foreign (fingerprint), lying sizes,
            bad codec payloads, a delta whose previous values are not the receiver's.

    Example:
        >>> upd = decode_update(blob, base)
        >>> upd.round, upd.examples, len(upd.values)
    """
    view = memoryview(payload).cast("B")
    hlen, (fingerprint, round_, examples, prev_digest, streams, entry_stream) = _checked_header(view)
    delta = prev_digest is not None
    if fingerprint != base.fingerprint:
        raise PayloadError(f"this update is for another base (fingerprint {fingerprint.hex()[:16]}..., "
                           f"the base here is {base.fingerprint.hex()[:16]}...)")
    layout = base.layout
    if len(entry_stream) != len(layout):
        raise PayloadError(f"the payload has {len(entry_stream)} entries, the base's layout {len(layout)}")
    consumed, used = [0] * len(streams), set(entry_stream)
    for e, s in zip(layout, entry_stream):
        if streams[s].dtype != e.dtype:
            raise PayloadError(f"{e.label} is {e.dtype} but is read from a {streams[s].dtype} stream ({s})")
        consumed[s] += e.nbytes
    for i, s in enumerate(streams):
        if i not in used:
            raise PayloadError(f"stream {i} is used by no entry")
        if consumed[i] != s.raw_length:
            raise PayloadError(f"stream {i} declares {s.raw_length} bytes, its entries take {consumed[i]}")
        if s.codec == RAW and s.stored_length != s.raw_length:
            raise PayloadError(f"raw stream {i} stores {s.stored_length} bytes for {s.raw_length}")
        if s.codec in LOSSY_CODECS and s.dtype not in CODEC_DTYPES[s.codec]:
            raise PayloadError(f"stream {i}: {CODEC_NAMES[s.codec]} cannot code {s.dtype} values")
    pos = PREAMBLE_SIZE + hlen
    total = sum(s.stored_length for s in streams)
    if total != len(view) - pos:
        raise PayloadError(f"streams should take {total} bytes after the header but {len(view) - pos} are there "
                           "(truncated or padded payload)")
    need = sum(s.raw_length for s in streams) + sum(e.nbytes for e in layout)
    if need > max_bytes:
        raise PayloadError(f"decoding needs {need:,} bytes of memory, over the limit of {max_bytes:,}")
    chunks = []
    for i, s in enumerate(streams):
        chunk = view[pos : pos + s.stored_length]
        if crc32(chunk) != s.crc:
            raise PayloadError(f"stream {i} checksum mismatch: the payload is corrupted")
        chunks.append(bytes(chunk))
        pos += s.stored_length
    prev = None
    if delta:
        prev = _as_values(previous if previous is not None else base, base, "previous")
        if values_digest(base, prev) != prev_digest:
            raise PayloadError("this delta update was made against other previous values than the ones here; "
                               "pass previous= the global values of the round it answers")
    raws = []
    for i, (s, chunk) in enumerate(zip(streams, chunks)):
        size = torch.empty((), dtype=s.dtype).element_size()
        try:
            if s.codec in LOSSY_CODECS and payload_dtype(s.codec, chunk, size) != s.dtype:
                raise PayloadError(f"stream {i}: the {CODEC_NAMES[s.codec]} payload decodes to another dtype than {s.dtype}")
            raws.append(decode_stream(s.codec, chunk, s.raw_length, size))
        except PayloadError:
            raise
        except FormatError as e:
            raise PayloadError(f"stream {i} ({CODEC_NAMES[s.codec]}): {e}") from e
    cursors = [0] * len(streams)
    out = []
    for j, (e, s) in enumerate(zip(layout, entry_stream)):
        data = raws[s][cursors[s] : cursors[s] + e.nbytes]
        cursors[s] += e.nbytes
        lossy = streams[s].codec in LOSSY_CODECS
        if prev is not None and not lossy:
            data = _xor(data, to_numpy_bytes(prev[j]))
        if e.dtype == torch.bool and data and max(data) > 1:
            raise PayloadError(f"{e.label}: a boolean byte is neither 0 nor 1")
        v = from_bytes(data, e.dtype, e.shape)
        if prev is not None and lossy:
            v = prev[j] + v  # one IEEE addition in the entry's dtype (section 5.2)
        out.append(v)
    return Update(values=out, round=round_, examples=examples, base=base, delta=delta,
                  codecs=tuple(CODEC_NAMES[s.codec] for s in streams))


def apply_update(model: nn.Module, update: Update | Sequence[torch.Tensor], base: Base | None = None) -> nn.Module:
    """Write an update's values into a model of its base, in place.

    A training-form model (``freeze_`` / ``load_into(..., trainable=True)``) gets its parameters
    and buffers overwritten (they keep their identity, so an optimizer stays attached); a plain
    module of a frozen base loads the dense weights the values define.

    Args:
        model: the module.
        update: an :class:`Update`, or values in layout order (then ``base`` is required).
        base: the base, when ``update`` is a list of values (e.g. ``fedavg``'s result).

    Returns:
        ``model``.

    Example:
        >>> apply_update(model, decode_update(blob, base))
        >>> apply_update(model, fedavg(updates), base)
    """
    from fzpack.freeze import _unwrap
    from fzpack.layers import frozen_weights

    if isinstance(update, Update):
        base, vals = update.base, update.values
    elif base is None:
        raise FzpackError("apply_update needs base= when given a list of values")
    else:
        vals = base.check_values(update)
    frozen_base = bool(base.info and base.info.tensors)
    if frozen_weights(_unwrap(model)) or not frozen_base:
        return base.write_into(model, vals)
    sd = base.checkpoint_with(vals)["state_dict"]
    try:
        _unwrap(model).load_state_dict(sd)
    except RuntimeError as e:
        raise FzpackError(f"the base's state dict does not fit this module: {str(e).splitlines()[0]}") from e
    return model

"""Little-endian primitive encoding shared by every part of the fzpack container.

Every read is bounded by the buffer it reads from: a length or count that points past the end
raises :class:`FormatError` instead of allocating or slicing out of range.
"""

from __future__ import annotations

import struct

import numpy as np

from fzpack.errors import FormatError

VARINT_MAX_BYTES = 9  # values < 2**63 need at most 9 LEB128 bytes
VARINT_LIMIT = 1 << 63


def append_varint(out: bytearray, v: int) -> None:
    """Append the unsigned LEB128 encoding of ``v`` (0 <= v < 2**63) to ``out``."""
    if not 0 <= v < VARINT_LIMIT:
        raise ValueError(f"varint out of range: {v}")
    while True:
        b = v & 0x7F
        v >>= 7
        if not v:
            out.append(b)
            return
        out.append(b | 0x80)


class Writer:
    """Append-only byte builder for the primitives of formats/fzpack-v1.md section 2."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> None:
        self._parts.append(struct.pack("<B", v))

    def u16(self, v: int) -> None:
        self._parts.append(struct.pack("<H", v))

    def u32(self, v: int) -> None:
        self._parts.append(struct.pack("<I", v))

    def f32(self, v: float) -> None:
        self._parts.append(struct.pack("<f", v))

    def varint(self, v: int) -> None:
        out = bytearray()
        append_varint(out, v)
        self._parts.append(bytes(out))

    def raw(self, b: bytes) -> None:
        self._parts.append(bytes(b))

    def blob(self, b: bytes) -> None:
        """A varint length followed by the bytes."""
        self.varint(len(b))
        self.raw(b)

    def string(self, s: str) -> None:
        self.blob(s.encode("utf-8"))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Cursor over a bytes object; every method validates before it reads."""

    def __init__(self, data: bytes | memoryview, what: str = "header") -> None:
        self._buf = memoryview(data)
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._buf) - self._pos

    def _take(self, n: int) -> memoryview:
        if n < 0 or n > self.remaining:
            raise FormatError(
                f"{self._what} is truncated: needs {n} more bytes at offset {self._pos}, "
                f"{self.remaining} left"
            )
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self._take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self._take(4))[0]

    def f32(self) -> float:
        return struct.unpack("<f", self._take(4))[0]

    def varint(self, limit: int = VARINT_LIMIT - 1, what: str = "value") -> int:
        """An unsigned LEB128 integer in canonical (shortest) form, at most ``limit``."""
        v = 0
        for i in range(VARINT_MAX_BYTES):
            b = self.u8()
            v |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise FormatError(f"{self._what}: non-canonical varint for {what}")
                if v > limit:
                    raise FormatError(f"{self._what}: {what} = {v} exceeds its limit {limit}")
                return v
        raise FormatError(f"{self._what}: varint for {what} is longer than {VARINT_MAX_BYTES} bytes")

    def raw(self, n: int) -> bytes:
        return bytes(self._take(n))

    def raw_view(self, n: int) -> memoryview:
        """The next ``n`` bytes without a copy."""
        return self._take(n)

    def blob(self, limit: int, what: str = "blob") -> bytes:
        n = self.varint(limit=min(limit, self.remaining), what=f"length of {what}")
        return self.raw(n)

    def string(self, limit: int = 65535, what: str = "string") -> str:
        b = self.blob(limit, what)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(f"{self._what}: {what} is not valid UTF-8") from e

    def expect_end(self) -> None:
        if self.remaining:
            raise FormatError(f"{self._what} has {self.remaining} unexpected trailing bytes")


def encode_varints(values: np.ndarray) -> bytes:
    """Vectorised LEB128 of non-negative integers < 2**63 (same bytes as :meth:`Writer.varint`)."""
    v = np.asarray(values, dtype=np.uint64)
    if v.size == 0:
        return b""
    nbytes = np.ones(v.shape, dtype=np.int64)
    for i in range(1, VARINT_MAX_BYTES):
        nbytes += v >= np.uint64(1 << (7 * i))
    out = np.empty(int(nbytes.sum()), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(nbytes)[:-1]])
    for i in range(int(nbytes.max())):
        live = nbytes > i
        group = ((v[live] >> np.uint64(7 * i)) & np.uint64(0x7F)).astype(np.uint8)
        more = (nbytes[live] > i + 1).astype(np.uint8) << 7
        out[starts[live] + i] = group | more
    return out.tobytes()


def decode_varints(data: bytes | memoryview, pos: int, n: int, limit: int, what: str = "varint") -> tuple[np.ndarray, int]:
    """Decode ``n`` consecutive canonical varints from ``data[pos:]``; returns (values, new pos).

    Vectorised twin of :meth:`Reader.varint`, with the same validation (length, canonical form,
    ``limit``).
    """
    if n == 0:
        return np.zeros(0, dtype=np.int64), pos
    arr = np.frombuffer(data, dtype=np.uint8)[pos:]
    ends = np.flatnonzero(arr < 0x80)[:n]
    if len(ends) < n:
        raise FormatError(f"{what}: stream ends inside its {n} varints")
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > VARINT_MAX_BYTES:
        raise FormatError(f"{what}: varint longer than {VARINT_MAX_BYTES} bytes")
    if np.any((lengths > 1) & (arr[ends] == 0)):
        raise FormatError(f"{what}: non-canonical varint")
    used = arr[: ends[-1] + 1].astype(np.uint64) & np.uint64(0x7F)
    shift = (np.arange(len(used)) - np.repeat(starts, lengths)).astype(np.uint64) * np.uint64(7)
    values = np.add.reduceat(used << shift, starts)
    if values.max() > np.uint64(limit):
        raise FormatError(f"{what}: value {int(values.max())} exceeds its limit {limit}")
    return values.astype(np.int64), pos + int(ends[-1]) + 1

"""Bit-exact binary ANS primitives shared by the mask codec (format: formats/mask-codec-v1.md).

Every coded bit uses a *fixed* Bernoulli model whose probability of a 1 is ``m / 2**16`` for an
integer ``m`` in ``[1, 65535]``. The float handed to constriction is exactly representable, so
constriction's quantisation to its 24-bit model is a pure integer function of ``m`` (see the
spec) and encoder and decoder agree bit for bit on every platform.

A stream is written as a list of *segments*: ``(bits, m)`` pairs in decoding order. The decoder
reads them back in the same order with one constriction call per segment, so no Python code runs
per coded bit.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from fzpack.errors import CodecError

PROB_BITS = 16
PROB_ONE = 1 << PROB_BITS
PROB_MIN = 1
PROB_MAX = PROB_ONE - 1

# Logistic probability table: index i <-> log2-odds (i - TABLE_CENTER) / TABLE_STEPS_PER_BIT.
TABLE_STEPS_PER_BIT = 8
TABLE_CENTER = 128
TABLE_SIZE = 2 * TABLE_CENTER + 1


def _logistic_table() -> np.ndarray:
    out = np.empty(TABLE_SIZE, dtype=np.int64)
    for i in range(TABLE_SIZE):
        # 2**(x/8) with x/8 exactly representable; no entry lies within 1e-6 of a rounding tie
        # (checked by the tests), so any libm accurate to 1 ulp reproduces this table.
        p = 1.0 / (1.0 + 2.0 ** (-(i - TABLE_CENTER) / TABLE_STEPS_PER_BIT))
        out[i] = min(PROB_MAX, max(PROB_MIN, math.floor(p * PROB_ONE + 0.5)))
    return out


TABLE = _logistic_table()
TABLE.setflags(write=False)
# Cost in bits of coding a 1 / a 0 at each table index (encoder-side model selection only).
COST1 = -np.log2(TABLE / PROB_ONE)
COST0 = -np.log2(1.0 - TABLE / PROB_ONE)


def ratio_prob(num: int, den: int) -> int:
    """Fixed-point probability ``round(num / den * 2**16)`` clamped to ``[1, 65535]``."""
    m = (num * PROB_ONE + den // 2) // den
    return min(PROB_MAX, max(PROB_MIN, m))


_MODELS: dict[int, object] = {}
_FAMILY: list[object] = []  # the Bernoulli family (probability given per bit), made on first use


def _family() -> object:
    if not _FAMILY:
        _FAMILY.append(constriction.stream.model.Bernoulli(perfect=False))
    return _FAMILY[0]


def _model(m: int) -> object:
    model = _MODELS.get(m)
    if model is None:
        model = constriction.stream.model.Bernoulli(m / PROB_ONE, perfect=False)
        _MODELS[m] = model
    return model


class BitWriter:
    """Collects segments of bits in decoding order and produces the ANS byte string."""

    def __init__(self) -> None:
        self._segments: list[tuple[np.ndarray, int | np.ndarray]] = []

    def add(self, bits: np.ndarray, m: int) -> None:
        if bits.size:
            if not PROB_MIN <= m <= PROB_MAX:
                raise ValueError(f"probability {m} out of range")
            self._segments.append((np.ascontiguousarray(bits, dtype=np.int32), int(m)))

    def add_varying(self, bits: np.ndarray, ms: np.ndarray) -> None:
        """Bits with one probability m / 2**16 each (same coding as one `add` per bit, one call)."""
        if bits.size:
            ms = np.asarray(ms, dtype=np.int64)
            if ms.shape != bits.shape or ms.min() < PROB_MIN or ms.max() > PROB_MAX:
                raise ValueError("probabilities out of range or not one per bit")
            self._segments.append((np.ascontiguousarray(bits, dtype=np.int32), ms))

    def to_bytes(self) -> bytes:
        coder = constriction.stream.stack.AnsCoder()
        # ANS is a stack: push the last segment first so that the decoder pops the first one.
        for bits, m in reversed(self._segments):
            if isinstance(m, int):
                coder.encode_reverse(bits, _model(m))
            else:  # m / 2**16 is exact in float64, so constriction quantises it as `_model(m)` would
                coder.encode_reverse(bits, _family(), m / PROB_ONE)
        words = np.asarray(coder.get_compressed(), dtype=np.uint32)
        data = words.astype("<u4").tobytes()
        # The top word is never zero, so at most 3 trailing zero bytes can be dropped; the
        # decoder restores them. This makes the byte string canonical and up to 3 bytes shorter.
        return data.rstrip(b"\x00")


class BitReader:
    """Reads segments back; every failure becomes a CodecError."""

    def __init__(self, data: bytes) -> None:
        if data and data[-1] == 0:
            raise CodecError("mask stream: non-canonical ANS data (trailing zero byte)")
        pad = (-len(data)) % 4
        # astype converts the little-endian file order to native order on any host.
        words = np.frombuffer(bytes(data) + b"\x00" * pad, dtype="<u4").astype(np.uint32)
        try:
            self._coder = constriction.stream.stack.AnsCoder(words)
        except Exception as exc:  # constriction raises ValueError on malformed data
            raise CodecError(f"mask stream: invalid ANS data ({exc})") from None

    def read(self, count: int, m: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=bool)
        try:
            out = self._coder.decode(_model(m), int(count))
        except Exception as exc:
            raise CodecError(f"mask stream: ANS decoding failed ({exc})") from None
        return np.asarray(out) != 0

    def finish(self) -> None:
        if not self._coder.is_empty():
            raise CodecError("mask stream: ANS data left over after decoding (corrupt payload)")


def get_varint(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """Read an unsigned LEB128 varint of at most 5 bytes whose value must be <= limit."""
    value = 0
    for i in range(5):
        if pos >= len(data):
            raise CodecError("mask payload truncated inside a varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i and byte == 0:
                raise CodecError("mask payload: non-canonical varint")
            if value > limit:
                raise CodecError(f"mask payload: value {value} exceeds limit {limit}")
            return value, pos
    raise CodecError("mask payload: varint longer than 5 bytes")

"""Binary ANS readers of mask-codec-v1 section 2 without constriction: compiled and pure Python.

`BitReader` (mask_ans.py) decodes through constriction, one call per run of equal-probability
bits; that is the fastest reader when numba is missing and the reference the tests hold these
two to. `FastBitReader` keeps the coder state itself and reads with the compiled kernels of
`mask_kernels.py`, so a decoder can also hand the state to a compiled loop (the FACTOR class
pass, the GAPS model). `SpecBitReader` is the spec's algorithm in plain Python integers: the GAPS
decoder's fallback (its probabilities change from bit to bit) and a test oracle.
All three accept the same bytes, give the same bits and reject the same streams.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from fzpack.errors import CodecError

_LOW24 = (1 << 24) - 1


def stream_words(data: bytes) -> np.ndarray:
    """The stream bytes as little-endian u32 words (spec section 2), zero-padded; CodecError if not canonical.

    Args:
        data: the stream bytes.

    Returns:
        uint32 array (native order).

    Example:
        >>> stream_words(b"\\x01\\x02").tolist()
        [513]
    """
    if data and data[-1] == 0:
        raise CodecError("mask stream: non-canonical ANS data (trailing zero byte)")
    pad = (-len(data)) % 4
    return np.frombuffer(bytes(data) + b"\x00" * pad, dtype="<u4").astype(np.uint32)


def _initial(words: np.ndarray) -> tuple[int, int]:
    top, state = int(words.size), 0
    if top:
        top -= 1
        state = int(words[top])
    if top:
        top -= 1
        state = (state << 32) | int(words[top])
    return top, state


class FastBitReader:
    """A BitReader (same read / finish) whose state the compiled kernels can continue.

    Args:
        data: the stream bytes.
        kernels: the compiled `mask_kernels` module.

    Example:
        >>> r = FastBitReader(b"", mask_kernels)  # doctest: +SKIP
    """

    def __init__(self, data: bytes, kernels: ModuleType) -> None:
        self.k = kernels
        self.words = stream_words(data)
        top, state = _initial(self.words)
        self.top, self.state = top, np.uint64(state)

    def read(self, count: int, m: int) -> np.ndarray:
        """`count` bits of probability m / 2**16 as a bool array."""
        out = np.zeros(count, dtype=bool)
        if count:
            top, state = self.k.read_bits(self.words, self.top, self.state, count, m, out)
            self.top, self.state = int(top), np.uint64(state)
        return out

    def finish(self) -> None:
        """CodecError unless the stream was consumed exactly (spec section 2, End)."""
        if self.top != 0 or int(self.state) != 0:
            raise CodecError("mask stream: ANS data left over after decoding (corrupt payload)")


class SpecBitReader:
    """The spec's reader in Python integers: one bit at a time (slow; fallback and oracle).

    Args:
        data: the stream bytes.

    Example:
        >>> SpecBitReader(b"").bit(32768)
        0
    """

    def __init__(self, data: bytes) -> None:
        self.words = [int(w) for w in stream_words(data)]
        self.top, self.state = _initial(np.array(self.words, dtype=np.uint32))

    def bit(self, m: int) -> int:
        """One bit of probability m / 2**16."""
        p0 = (((65536 - m) * 16777214) >> 16) + 1
        q = self.state & _LOW24
        if q < p0:
            b, self.state = 0, p0 * (self.state >> 24) + q
        else:
            b, self.state = 1, ((1 << 24) - p0) * (self.state >> 24) + (q - p0)
        if self.state < 1 << 32 and self.top:
            self.top -= 1
            self.state = (self.state << 32) | self.words[self.top]
        return b

    def read(self, count: int, m: int) -> np.ndarray:
        """`count` bits of probability m / 2**16 as a bool array."""
        return np.array([self.bit(m) for _ in range(count)], dtype=bool)

    def finish(self) -> None:
        """CodecError unless the stream was consumed exactly."""
        if self.top != 0 or self.state != 0:
            raise CodecError("mask stream: ANS data left over after decoding (corrupt payload)")

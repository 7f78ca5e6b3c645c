"""Mask model 4 ``GAPS``: the positions of the set entries as geometric gaps (mask-codec-v1 section 6A).

Models 1 (IID) and 2 (FACTOR) read one coded bit per candidate entry, so decoding a 2.4 M-entry
conv weight with 18 trained entries reads 2.4 M bits. GAPS reads only the `count` gaps between
consecutive set entries, each as a unary quotient and r low bits (about log2(n / count) + 2 bit
reads per set entry), so its decoding work is O(count log(n / count)), independent of n.

The code is exact for the i.i.d. model: with a = 1 - count / n, P(gap = g) is proportional to
a**g, and g = q * 2**r + sum_j b_j 2**j factors into independent parts: q is geometric with
continuation probability a**(2**r) and bit b_j is 1 with probability a**(2**j) / (1 + a**(2**j)).
So a GAPS payload costs what an IID payload costs (n H(count / n) bits, up to rounding) while its
decoder does a tiny fraction of the work. The powers a**(2**j) come from an exact Q32 integer
recurrence, so encoder and decoder agree on every platform.
"""

from __future__ import annotations

import numpy as np

from fzpack.codecs.ans_reader import FastBitReader, SpecBitReader
from fzpack.codecs.mask_ans import BitWriter, ratio_prob
from fzpack.errors import CodecError

Q32 = 1 << 32
HALF = 1 << 31
R_MAX = 40  # a[j] <= 2**31 for some j <= 33 whenever n <= 2**34, so this cap is never reached


def gaps_params(n: int, count: int) -> tuple[int, int, list[int]]:
    """(r, mu, mlow) of spec 6A for `count` set entries among `n`.

    Args:
        n: entries, 0 < count < n <= 2**34.
        count: set entries.

    Returns:
        r (low bits per gap), mu (probability / 2**16 that a gap's quotient goes on), and
        mlow[j] (probability / 2**16 that low bit j is 1), j < r.

    Example:
        >>> gaps_params(100, 10)
        (3, 28177, [30885, 29662, 26953])
    """
    a = [((n - count) << 32) // n]  # Q32 of 1 - count / n, in [0, 2**32)
    while a[-1] > HALF and len(a) <= R_MAX:
        a.append((a[-1] * a[-1] + HALF) >> 32)  # a**(2**(j+1)) from a**(2**j), rounded
    r = len(a) - 1
    return r, ratio_prob(a[r], Q32), [ratio_prob(a[j], Q32 + a[j]) for j in range(r)]


def gaps_reads(n: int, count: int) -> int:
    """Expected bit reads of a GAPS decode (encoder's decode-cost estimate): about count * (r + 2)."""
    r = gaps_params(n, count)[0] if 0 < count < n else 0
    return count * (r + 2)


def encode_gaps(flat: np.ndarray, count: int) -> bytes:
    """The GAPS stream (without the model byte) of a flat bool mask with 0 < count < size set entries.

    Args:
        flat: the mask, flat (C order).
        count: its number of set entries.

    Returns:
        The ANS stream bytes.

    Example:
        >>> encode_gaps(np.array([0, 0, 1, 0] * 25, dtype=bool), 25).hex()  # doctest: +SKIP
    """
    n = flat.size
    r, mu, mlow = gaps_params(n, count)
    pos = np.flatnonzero(flat).astype(np.int64)
    gaps = np.diff(pos, prepend=-1) - 1
    q, low = gaps >> r, gaps & ((1 << r) - 1)
    # decisions per gap in decoding order: q ones and a zero at mu, then the r low bits (MSB first)
    per = q + 1 + r
    start = np.concatenate([[0], np.cumsum(per)[:-1]])
    bits = np.zeros(int(per.sum()), dtype=np.int32)
    probs = np.empty(bits.size, dtype=np.int64)
    uq = q + 1  # unary decisions of each gap: decision t of gap i sits at start[i] + t
    unary = np.repeat(start, uq) + np.arange(int(uq.sum())) - np.repeat(np.cumsum(uq) - uq, uq)
    probs[unary] = mu
    bits[unary] = 1
    bits[start + q] = 0  # the terminating zero of each quotient
    for i, j in enumerate(range(r - 1, -1, -1)):
        at = start + q + 1 + i
        bits[at] = (low >> j) & 1
        probs[at] = mlow[j]
    w = BitWriter()
    w.add_varying(bits, probs)
    return w.to_bytes()


def decode_gaps(stream: bytes, n: int, count: int, kernels=None) -> tuple[np.ndarray, np.ndarray]:
    """Decode a GAPS stream into a flat bool mask of n entries with `count` set (CodecError if invalid).

    Args:
        stream: the ANS stream bytes (after the model byte).
        n: entries.
        count: set entries, 0 < count < n.
        kernels: the compiled `mask_kernels` module, or None for the pure-Python reader.

    Returns:
        (bool array of length n, int64 array of the `count` positions in increasing order).
    """
    r, mu, mlow = gaps_params(n, count)
    out = np.zeros(n, dtype=bool)
    pos = np.empty(count, dtype=np.int64)
    if kernels is not None:
        reader = FastBitReader(stream, kernels)
        reader.top, reader.state, ok = kernels.gaps_read(reader.words, reader.top, reader.state, count, n, r, mu,
                                                         np.array(mlow + [0], dtype=np.int64), out, pos)
    else:
        reader = SpecBitReader(stream)
        ok = _gaps_python(reader, count, n, r, mu, mlow, out, pos)
    if not ok:
        raise CodecError("gap mask payload puts an entry past the end of the tensor")
    reader.finish()
    return out, pos


def _gaps_python(reader: SpecBitReader, count: int, n: int, r: int, mu: int, mlow: list[int], out: np.ndarray,
                 positions: np.ndarray) -> bool:
    prev = -1
    for i in range(count):
        q = 0
        while reader.bit(mu):
            q += 1
            if prev + 1 + (q << r) >= n:
                return False
        low = 0
        for j in range(r - 1, -1, -1):
            low |= reader.bit(mlow[j]) << j
        pos = prev + 1 + (q << r) + low
        if pos >= n:
            return False
        out[pos] = True
        positions[i] = prev = pos
    return True

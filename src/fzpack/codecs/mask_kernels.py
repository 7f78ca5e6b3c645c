"""Compiled (numba) mask-codec decoding: the binary ANS reader of mask-codec-v1 section 2, the
GAPS model's gap reader (section 6A) and the FACTOR model's class pass (section 6.3).

These are transcriptions of the spec's integer algorithms; the tests decode every model both
with them and with the reference paths (constriction + numpy, or the pure-Python reader) and
require identical masks and identical rejections. Loaded only through `fzpack.generator.compiled`
(so FZPACK_KERNEL governs them as it governs the generator); nothing here allocates more than
O(n) or loops without bound on hostile input: every loop is bounded by n, count or the stream.

An ANS reader state is (top, state): words[0 : top] are the words not yet read (top of the stack
= words[top - 1]) and `state` the 64-bit coder state. Every function takes it and returns it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(nogil=True, cache=True, error_model="numpy")

_U64 = np.uint64
_LOW24 = _U64((1 << 24) - 1)
_ONE24 = _U64(1 << 24)
_SH24, _SH32 = _U64(24), _U64(32)
_WORD_LIMIT = _U64(1 << 32)

#: FACTOR: log2-odds sums below this are dead (spec 6.3: live sums stay above -2**17).
DEAD_BELOW = -(1 << 19)
TABLE_LAST = 256  # classes are 0..256; code = class + 1, code 0 = dead
NBINS_LAST = 15
PIECE = 1 << 14  # entries per piece of the class pass (its int64 scratch stays in L1/L2)


@njit(inline="always", **_JIT)
def _bit(words, top, state, m):
    """One bit of probability m / 2**16 (spec section 2): (bit, top, state)."""
    p0 = _U64((((65536 - m) * 16777214) >> 16) + 1)  # constriction's perfect=False 24-bit mass of 0
    q = state & _LOW24
    # Selects instead of an if/else on the bit: on masks of 20-60 % density a branch would
    # mispredict about every other bit.
    one = q >= p0
    start = p0 if one else _U64(0)
    size = (_ONE24 - p0) if one else p0
    bit = 1 if one else 0
    state = size * (state >> _SH24) + (q - start)
    if state < _WORD_LIMIT and top > 0:
        top -= 1
        state = (state << _SH32) | _U64(words[top])
    return bit, top, state


@njit(**_JIT)
def read_bits(words, top_in, state_in, count, m, out):
    """Read `count` bits of probability m into the bool array out[:count]; returns (top, state)."""
    top, state = np.int64(top_in), _U64(state_in)  # a Python int state would type as int64
    for i in range(count):
        bit, top, state = _bit(words, top, state, m)
        out[i] = bit != 0
    return top, state


@njit(**_JIT)
def gaps_read(words, top_in, state_in, count, n, r, mu, mlow, out, positions):
    """GAPS (spec 6A): `count` gaps into the bool mask out (length n) and their positions.

    Returns (top, state, ok); ok is False when a position would reach n (the payload is invalid).
    Work: at most count * (r + 1) + n / 2**r + count bit reads.
    """
    top, state = np.int64(top_in), _U64(state_in)  # a Python int state would type as int64
    prev = -1
    step = np.int64(1) << r
    for i in range(count):
        q = np.int64(0)
        while True:
            bit, top, state = _bit(words, top, state, mu)
            if bit == 0:
                break
            q += 1
            if prev + 1 + q * step >= n:
                return top, state, False
        low = np.int64(0)
        for j in range(r - 1, -1, -1):
            bit, top, state = _bit(words, top, state, mlow[j])
            low |= np.int64(bit) << j
        pos = prev + 1 + q * step + low
        if pos >= n:
            return top, state, False
        out[pos] = True
        positions[i] = pos
        prev = pos
    return top, state, True


@njit(**_JIT)
def factor_classes(ctx, scale, wlut, a0, rowtab, base, d0, rowlen, codes, hist):
    """Per entry its code (0 dead, else class + 1; spec 6.3) into codes, and the count of each code.

    Args:
        ctx: float32 context, flat (length d0 * rowlen), or empty without the |W0| factor.
        scale: float32 bin scale. wlut: int64[16] terms of the bins (empty without the factor).
        a0: int64 terms of view axis 0 (empty without). rowtab: int64[rowlen] terms of axes 1 and
            2 summed over one row (empty without). base: the header's base.
        d0, rowlen: rows of the view and entries per row. codes: uint16[n]. hist: int64[258].
    """
    has_w, has_a0, has_rt = wlut.size > 0, a0.size > 0, rowtab.size > 0
    # one row at a time, in simple loops the compiler vectorises (the flags are loop-invariant)
    piece = min(rowlen, PIECE)
    eta = np.empty(piece, dtype=np.int64)
    top = np.float32(NBINS_LAST)
    # four histograms, one per entry index mod 4: consecutive increments of one counter would
    # otherwise wait on each other through memory
    sub = np.zeros((4, hist.size), dtype=np.int64)
    for row in range(d0):
        eta_row = base + (a0[row] if has_a0 else 0)
        for p0 in range(0, rowlen, piece):  # a row in pieces: 1-D masks are one long row
            m = min(piece, rowlen - p0)
            off = row * rowlen + p0
            if has_rt:
                for p in range(m):
                    eta[p] = eta_row + rowtab[p0 + p]
            else:
                eta[:m] = eta_row
            if has_w:
                for p in range(m):
                    t = abs(ctx[off + p]) * scale  # binary32 product, as weight_bins
                    t = t if t < top else top  # NaN and >= 15: the last bin (as fmin)
                    eta[p] += wlut[np.int64(t)]
            for p in range(m):
                e = eta[p]
                c = min(max(e, 0), TABLE_LAST) + 1
                codes[off + p] = c if e >= DEAD_BELOW else 0
            for p in range(0, m - 3, 4):
                sub[0, codes[off + p]] += 1
                sub[1, codes[off + p + 1]] += 1
                sub[2, codes[off + p + 2]] += 1
                sub[3, codes[off + p + 3]] += 1
            for p in range(m - m % 4, m):
                sub[0, codes[off + p]] += 1
    for j in range(4):
        hist += sub[j]


@njit(**_JIT)
def factor_read(words, top_in, state_in, hist, table, count, ranks, starts):
    """Read the mask bits class by class (spec 6.3), keeping the ranks of the bits that read 1.

    ranks[starts[c] : starts[c + 1]] are, for code c, the ranks (in increasing entry order among
    that class's live entries) of its set entries. Returns (top, state, ones); stops early with
    ones = count + 1 when more than `count` bits read 1 (the payload is invalid).
    """
    top, state = np.int64(top_in), _U64(state_in)  # a Python int state would type as int64
    ones = 0
    starts[0] = 0
    starts[1] = 0
    for c in range(1, hist.size):
        m = table[c - 1]
        for j in range(hist[c]):
            bit, top, state = _bit(words, top, state, m)
            if bit:
                if ones == count:
                    return top, state, count + 1
                ranks[ones] = j
                ones += 1
        if c + 1 < starts.size:
            starts[c + 1] = ones
    return top, state, ones


@njit(**_JIT)
def factor_read_bits(words, top_in, state_in, hist, table, bits):
    """Read the mask bits class by class (spec 6.3) into bits[0 : live] (class order, one byte each).

    Branch-free on the bit values. Returns (top, state, ones): the reader state after the last
    bit, and how many bits read 1.
    """
    top, state = np.int64(top_in), _U64(state_in)  # a Python int state would type as int64
    ones = 0
    j = 0
    for c in range(1, hist.size):
        m = table[c - 1]
        for _ in range(hist[c]):
            bit, top, state = _bit(words, top, state, m)
            bits[j] = bit
            ones += bit
            j += 1
    return top, state, ones


@njit(**_JIT)
def factor_place_bits(codes, bits, hist, out):
    """out[i] = the next unread bit of entry i's class (factor_read_bits' order); dead entries are 0.

    bits holds one extra 0 byte at its end, which every dead entry (code 0) reads, so the loop has
    no branch: on dense masks a comparison per entry (the earlier rank walk) mispredicted about every other one.
    """
    cursor = np.empty(hist.size, dtype=np.int64)
    cursor[0] = bits.size - 1
    acc = 0
    for c in range(1, hist.size):
        cursor[c] = acc
        acc += hist[c]
    for i in range(codes.size):
        c = codes[i]
        j = cursor[c]
        out[i] = bits[j]
        cursor[c] = j + (c != 0)

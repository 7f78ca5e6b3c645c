"""Index coding of the q8 value codec (formats/fzpack-v1.md §3.2.2): packed bits or categorical ANS.

A q8 segment maps every value to an index ``0 <= i < K`` (K <= 256 levels). The indices are
stored either

* ``PACKED`` (0): ``b = bit_length(K - 1)`` bits per index, least significant bit first, padded
  with zero bits to a whole byte; or
* ``ANS`` (1): one constriction 0.5.0 ``stack.AnsCoder`` stream under a categorical model built
  from a (bucketed) histogram of the indices that the payload carries. The histogram costs
  ``ceil(K / 2**r)`` varints; coarser buckets (larger ``r``) cost fewer bytes of side
  information and a little more per index, and the encoder keeps whichever total is smaller.

The model is passed to constriction as exact integer weights (float64), so its 24-bit
quantisation is a pure function of the stored counts (spelled out in the spec); encoder and
decoder agree on every platform. Every length, count and index is validated on decode.
"""

from __future__ import annotations

import constriction
import numpy as np

from fzpack.container.bytes_io import Reader, encode_varints
from fzpack.errors import CodecError, FormatError

PACKED, ANS = 0, 1
INDEX_CODER_NAMES = {PACKED: "packed", ANS: "ans"}
MAX_BUCKET_SHIFT = 7
MAX_INDICES = 1 << 40  # keeps every histogram sum (<= n * 2**7) exact in float64


def index_bits(k: int) -> int:
    """Bits per packed index for ``k`` levels: 0 for one level, 8 for 129-256."""
    return (k - 1).bit_length()


def encode_packed(idx: np.ndarray, k: int) -> bytes:
    """``b`` bits per index, LSB first, zero-padded to a byte (empty when ``k == 1``)."""
    b = index_bits(k)
    if b == 0 or idx.size == 0:
        return b""
    if b == 8:
        return idx.astype(np.uint8).tobytes()
    bits = (idx.astype(np.uint16)[:, None] >> np.arange(b, dtype=np.uint16)) & 1
    return np.packbits(bits.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def decode_packed(data: bytes, n: int, k: int) -> np.ndarray:
    """Inverse of :func:`encode_packed`; checks the exact length, zero padding and ``index < k``."""
    b = index_bits(k)
    want = (n * b + 7) // 8
    if len(data) != want:
        raise CodecError(f"q8: packed indices take {len(data)} bytes, {n} indices of {b} bits need {want}")
    if b == 0:
        return np.zeros(n, dtype=np.int64)
    if b == 8:
        idx = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    else:
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        if bits[n * b :].any():
            raise CodecError("q8: packed indices have non-zero padding bits")
        idx = (bits[: n * b].reshape(n, b).astype(np.int64) << np.arange(b)).sum(axis=1)
    if n and int(idx.max()) >= k:
        raise CodecError(f"q8: index {int(idx.max())} is outside the {k} levels")
    return idx


def _weights(counts: np.ndarray, k: int, shift: int) -> np.ndarray:
    """Per-symbol model weights: each symbol gets its bucket's count (exact integers as float64)."""
    return np.repeat(counts.astype(np.float64), 1 << shift)[:k]


def _model(weights: np.ndarray) -> object:
    return constriction.stream.model.Categorical(weights, perfect=False)


def encode_ans(idx: np.ndarray, k: int, shift: int) -> bytes:
    """``u8 r``, ``ceil(k / 2**r)`` varint bucket counts, then the ANS bytes (k >= 2)."""
    counts = np.bincount(idx >> shift, minlength=-(-k // (1 << shift)))
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(idx.astype(np.int32), _model(_weights(counts, k, shift)))
    words = np.asarray(coder.get_compressed(), dtype=np.uint32)
    # The top word is never zero: dropping its zero high bytes makes the bytes canonical.
    ans = words.astype("<u4").tobytes().rstrip(b"\x00")
    return bytes([shift]) + encode_varints(counts) + ans


def decode_ans(data: bytes, n: int, k: int) -> np.ndarray:
    """Inverse of :func:`encode_ans`; the decoded histogram must equal the stored one."""
    if k < 2:
        raise CodecError("q8: ANS-coded indices need at least 2 levels")
    r = Reader(data, "q8 index model")
    shift = r.u8()
    if shift > MAX_BUCKET_SHIFT:
        raise CodecError(f"q8: bucket shift {shift} exceeds {MAX_BUCKET_SHIFT}")
    buckets = -(-k // (1 << shift))
    counts = np.array([r.varint(limit=n, what="bucket count") for _ in range(buckets)], dtype=np.int64)
    if int(counts.sum()) != n:
        raise CodecError(f"q8: histogram counts add up to {int(counts.sum())}, the stream holds {n} values")
    ans = r.raw(r.remaining)
    if ans and ans[-1] == 0:
        raise CodecError("q8: non-canonical ANS data (trailing zero byte)")
    words = np.frombuffer(ans + b"\x00" * (-len(ans) % 4), dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        idx = np.asarray(coder.decode(_model(_weights(counts, k, shift)), n), dtype=np.int64)
        empty = coder.is_empty()
    except Exception as exc:  # constriction raises ValueError/AssertionError on malformed data
        raise CodecError(f"q8: ANS decoding failed ({exc})") from None
    if not empty:
        raise CodecError("q8: ANS data left over after decoding (corrupt payload)")
    if not np.array_equal(np.bincount(idx >> shift, minlength=buckets), counts):
        raise CodecError("q8: decoded indices do not match the stored histogram")
    return idx


def encode_indices(idx: np.ndarray, k: int) -> bytes:
    """The smaller of the packed and ANS codings: ``u8 coder`` + its bytes."""
    best = bytes([PACKED]) + encode_packed(idx, k)
    if k >= 2 and idx.size:
        for shift in range(0, 6):
            if shift and (k >> shift) < 2:
                break
            out = bytes([ANS]) + encode_ans(idx, k, shift)
            if len(out) < len(best):
                best = out
    return best


def decode_indices(data: bytes, n: int, k: int) -> np.ndarray:
    """Inverse of :func:`encode_indices`: exactly ``n`` indices, each ``< k``."""
    if not data:
        raise CodecError("q8: payload ends before the index coder byte")
    if n > MAX_INDICES:
        raise CodecError(f"q8: {n} values exceed the codec's limit of {MAX_INDICES}")
    coder, rest = data[0], bytes(data[1:])
    try:
        if coder == PACKED:
            return decode_packed(rest, n, k)
        if coder == ANS:
            return decode_ans(rest, n, k)
    except CodecError:
        raise
    except FormatError as e:  # a truncated histogram: re-raise as a codec error of this stream
        raise CodecError(str(e)) from e
    raise CodecError(f"q8: unknown index coder {coder}")

"""Stream codec 3, ``planes`` (formats/fzpack-v1.md §3.2.3): rotated byte planes, each coded on its own.

Every item (``itemsize`` = 2, 4 or 8 bytes, a little-endian unsigned integer) is rotated left by
``k`` bits and split into its bytes: plane ``j`` holds byte ``j`` of every rotated item. Each
plane is then stored raw, as one zstd frame, or ANS-coded with the q8 index coder's categorical
model (K = 256, §3.2.2), whichever is smallest.

Why: in IEEE floats the exponent is the only part that is far from uniform. Rotating by one bit
moves the sign out of the top byte, so that byte is the exponent of bfloat16 / float32; rotating
by three also moves the top exponent bits (nearly constant in weights) out and the top mantissa
bits (whose distribution depends on the exponent) in, so the top plane's order-0 entropy captures
part of their dependence. Each plane is then coded close to its order-0 entropy: ANS reaches it
within a few bytes (small streams: constriction decodes ~40 M symbols/s), zstd with parameters
that leave its Huffman literal coder doing nearly all the work (large streams: ~1.5 GB/s decode).
Byte-grouped zstd (codec 2) keeps the sign in the exponent byte and pays for zstd's short matches
in low-entropy data: ZipNN's Huffman coding of the (sign-rotated) exponent beats it by ~2 %.

The writer picks ``k`` from the order-0 entropy of a sample, so the choice costs a few
milliseconds; decoding does not depend on how ``k`` was chosen.
"""

from __future__ import annotations

import math

import constriction
import numpy as np
import zstandard

from fzpack.codecs.q8_index import MAX_BUCKET_SHIFT, _model, _weights
from fzpack.container.bytes_io import Reader, append_varint, encode_varints
from fzpack.errors import CodecError, FormatError
from fzpack.thread_pool import SharedPool

CODER_RAW, CODER_ZSTD, CODER_ANS = 0, 1, 2
PLANE_CODER_NAMES = {CODER_RAW: "raw", CODER_ZSTD: "zstd", CODER_ANS: "ans"}
ITEMSIZES = (2, 4, 8)
_UINT = {2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}

#: Items per chunk of the split / merge loops: bounds their temporaries to a few MiB.
CHUNK = 1 << 20
#: Symbols per ANS decode call (the decoder's temporaries stay at 4 bytes x this).
ANS_CHUNK = 1 << 20
#: Planes up to this many bytes may be ANS-coded by the writer (decoding runs at ~40 M symbols/s).
ANS_MAX_PLANE = 1 << 20
#: zstd-3 (with its usual match finder) is tried besides the Huffman-like setting on planes up to this size.
ZSTD3_MAX_PLANE = 4 << 20
_SAMPLE_BLOCKS, _SAMPLE_BLOCK = 16, 4096


def _huffman_params(threads: int) -> zstandard.ZstdCompressionParameters:
    """zstd with a match finder too weak to find the short matches of low-entropy bytes.

    Only long repeats survive (hash of 7 bytes, one probe, 64 buckets); what is left are 128 KiB
    blocks of Huffman-coded literals, within ~0.5 % of a pure Huffman coder and ~1.5 GB/s to
    decode. zstd's default levels take 4-7 byte matches in exponent bytes that cost more than the
    literals they replace (+20 % on a Gaussian tensor's exponents at level 3).
    """
    return zstandard.ZstdCompressionParameters(window_log=17, chain_log=6, hash_log=6, search_log=1, min_match=7,
                                               target_length=0, strategy=zstandard.STRATEGY_FAST, write_content_size=1,
                                               threads=threads)


_HUFF = {t: _huffman_params(t) for t in (0, 2)}


def rotl(v: np.ndarray, k: int, bits: int) -> np.ndarray:
    """Each item rotated left by k bits (a new array; ``v`` itself when k = 0)."""
    if k == 0:
        return v
    t = v.dtype.type
    return (v << t(k)) | (v >> t(bits - k))


def _rotate_inplace_right(v: np.ndarray, k: int, bits: int) -> None:
    """v = rotr(v, k), in place (one temporary of v's size)."""
    if k == 0:
        return
    t = v.dtype.type
    tmp = v >> t(k)
    np.left_shift(v, t(bits - k), out=v)
    np.bitwise_or(v, tmp, out=v)


def _entropy_bits(hist: np.ndarray) -> float:
    total = hist.sum()
    if total == 0:
        return 0.0
    p = hist[hist > 0] / total
    return float(-(hist[hist > 0] * np.log2(p)).sum())


def _sample(u: np.ndarray) -> np.ndarray:
    n = u.size
    if n <= _SAMPLE_BLOCKS * _SAMPLE_BLOCK:
        return u
    starts = np.linspace(0, n - _SAMPLE_BLOCK, _SAMPLE_BLOCKS).astype(np.int64)
    return np.concatenate([u[s:s + _SAMPLE_BLOCK] for s in starts])


def choose_rotation(u: np.ndarray, itemsize: int) -> int:
    """The rotation whose byte planes have the smallest summed order-0 entropy on a sample (ties: smaller k)."""
    bits = 8 * itemsize
    s = _sample(u)
    best, best_cost = 0, math.inf
    for k in range(bits):
        v = rotl(s, k, bits)
        b = v.view(np.uint8).reshape(-1, itemsize)
        cost = sum(_entropy_bits(np.bincount(b[:, j], minlength=256)) for j in range(itemsize))
        if cost < best_cost * (1 - 1e-4):
            best, best_cost = k, cost
    return best


def split(u: np.ndarray, k: int, itemsize: int) -> list[np.ndarray]:
    """Byte planes of the items rotated left by k (plane j = byte j of every rotated item)."""
    n, bits = u.size, 8 * itemsize
    planes = [np.empty(n, np.uint8) for _ in range(itemsize)]
    t = u.dtype.type
    for a in range(0, n, CHUNK):
        v = rotl(u[a:a + CHUNK], k, bits)
        for j in range(itemsize):
            planes[j][a:a + CHUNK] = v >> t(8 * j) if j else v  # the assignment keeps the low byte
    return planes


def merge(planes: list[np.ndarray], k: int, itemsize: int, out: np.ndarray, start: int = 0, stop: int | None = None) -> None:
    """Inverse of :func:`split`, into ``out`` (a uint8 array of n * itemsize bytes); items [start, stop) only if given."""
    n, bits = planes[0].size, 8 * itemsize
    u = out.view(_UINT[itemsize])
    b = out.reshape(n, itemsize)
    stop = n if stop is None else stop
    for a in range(start, stop, CHUNK):
        c = u[a:min(a + CHUNK, stop)]
        e = a + c.size
        if itemsize == 2:  # two shifts and an or beat two strided byte copies
            np.left_shift(planes[1][a:e], 8, out=c, dtype=c.dtype, casting="unsafe")
            np.bitwise_or(c, planes[0][a:e], out=c, casting="unsafe")
        else:
            for j in range(itemsize):
                b[a:e, j] = planes[j][a:e]
        _rotate_inplace_right(c, k, bits)


# -- plane coders ---------------------------------------------------------------------------------------
def _ans_estimate(hist: np.ndarray, shift: int) -> float:
    """Bytes of an ANS plane with bucket shift ``shift``: cross-entropy under the bucketed model + table."""
    buckets = np.add.reduceat(hist, np.arange(0, 256, 1 << shift))
    w = np.repeat(buckets.astype(np.float64), 1 << shift)
    # each bucket's mass spreads over its 2^shift symbols (+1 per symbol: constriction's minimum mass)
    q = (w + 1.0 / (1 << 24) * w.sum()) / (w.sum() * (1 + 256.0 / (1 << 24)))
    used = hist > 0
    bits = float(-(hist[used] * np.log2(q[used])).sum())
    return bits / 8 + len(encode_varints(buckets)) + 5


def encode_ans(plane: np.ndarray, shift: int) -> bytes:
    """Coder 2 body: u8 r, ceil(256 / 2^r) varint bucket counts, the ANS bytes (q8 index coder 1, K = 256)."""
    counts = np.bincount(plane >> shift, minlength=256 >> shift)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(plane.astype(np.int32), _model(_weights(counts, 256, shift)))
    words = np.asarray(coder.get_compressed(), dtype=np.uint32)
    return bytes([shift]) + encode_varints(counts) + words.astype("<u4").tobytes().rstrip(b"\x00")


def decode_ans(data: bytes | memoryview, n: int, out: np.ndarray) -> None:
    """Inverse of :func:`encode_ans` into ``out`` (n bytes), in chunks; the histogram must match the counts."""
    if n == 0:
        raise CodecError("planes: an ANS plane needs at least one item")
    r = Reader(data, "planes ANS plane")
    try:
        shift = r.u8()
        if shift > MAX_BUCKET_SHIFT:
            raise CodecError(f"planes: bucket shift {shift} exceeds {MAX_BUCKET_SHIFT}")
        buckets = 256 >> shift
        counts = np.array([r.varint(limit=n, what="bucket count") for _ in range(buckets)], dtype=np.int64)
    except FormatError as e:
        raise CodecError(str(e)) from e
    if int(counts.sum()) != n:
        raise CodecError(f"planes: histogram counts add up to {int(counts.sum())}, the plane holds {n} bytes")
    ans = r.raw(r.remaining)
    if ans and ans[-1] == 0:
        raise CodecError("planes: non-canonical ANS data (trailing zero byte)")
    words = np.frombuffer(ans + b"\x00" * (-len(ans) % 4), dtype="<u4").astype(np.uint32)
    seen = np.zeros(buckets, dtype=np.int64)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        model = _model(_weights(counts, 256, shift))
        for a in range(0, n, ANS_CHUNK):
            m = min(ANS_CHUNK, n - a)
            sym = np.asarray(coder.decode(model, m))
            out[a:a + m] = sym
            seen += np.bincount(sym >> shift, minlength=buckets)[:buckets]
        empty = coder.is_empty()
    except Exception as exc:  # constriction raises ValueError/AssertionError on malformed data
        raise CodecError(f"planes: ANS decoding failed ({exc})") from None
    if not empty:
        raise CodecError("planes: ANS data left over after decoding (corrupt payload)")
    if not np.array_equal(seen, counts):
        raise CodecError("planes: decoded bytes do not match the stored histogram")


def _code_plane(plane: np.ndarray, *, slow: bool, threads: int) -> tuple[int, bytes]:
    """The smallest of raw, zstd (Huffman-like; zstd-3 too for small planes) and ANS (``slow`` only)."""
    n = plane.size
    best: tuple[int, bytes | np.ndarray] = (CODER_RAW, plane)
    if n == 0:
        return CODER_RAW, b""
    small = n <= ANS_MAX_PLANE
    hist = np.bincount(plane if small else _sample(plane), minlength=256)  # big planes: a sample decides
    if hist.max() == hist.sum() or _entropy_bits(hist) < 7.98 * hist.sum():  # a near-uniform plane stays raw
        data = memoryview(plane)
        z = zstandard.ZstdCompressor(compression_params=_HUFF[threads if n > (4 << 20) else 0]).compress(data)
        if len(z) < n:
            best = (CODER_ZSTD, z)
        if n <= ZSTD3_MAX_PLANE:
            z3 = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)
            if len(z3) < len(best[1]):
                best = (CODER_ZSTD, z3)
        if slow and small:
            shift = min(range(0, 6), key=lambda s: _ans_estimate(hist, s))
            if _ans_estimate(hist, shift) < len(best[1]):
                a = encode_ans(plane, shift)
                if len(a) < len(best[1]):
                    best = (CODER_ANS, a)
    coder, data = best
    return coder, data.tobytes() if isinstance(data, np.ndarray) else data


def encode_planes(data: bytes | memoryview | np.ndarray, itemsize: int, *, slow: bool = False, threads: int = 0,
                  rotation: int | None = None) -> bytes:
    """Codec 3 payload of ``data`` (``itemsize`` 2, 4 or 8; a whole number of items).

    Args:
        data: the raw little-endian item bytes (any buffer; not copied).
        slow: allow the ANS plane coder (small streams: its decoder is ~40x slower than zstd's).
        threads: zstd worker threads for large planes.
        rotation: force ``k`` (tests); default: chosen from a sample.
    """
    if itemsize not in ITEMSIZES:
        raise ValueError(f"planes: itemsize {itemsize} is not 2, 4 or 8")
    u = np.frombuffer(data, dtype=_UINT[itemsize])
    k = choose_rotation(u, itemsize) if rotation is None else rotation
    out = bytearray([k])
    parts = [out]
    planes = split(u, k, itemsize)
    if u.size >= PARALLEL_PLANE_BYTES:  # two planes at a time (zstd releases the GIL); each coded as alone
        coded_planes = list(_pool.get(2).map(lambda p: _code_plane(p, slow=slow, threads=threads), planes))
    else:
        coded_planes = [_code_plane(p, slow=slow, threads=threads) for p in planes]
    for coder, coded in coded_planes:
        head = bytearray([coder])
        append_varint(head, len(coded))
        parts += [head, coded]
    return b"".join(parts)


#: Planes of at least this many items are coded on two threads, and decoded so when two or more are
#: zstd frames; the bytes are those of the sequential loop.
PARALLEL_PLANE_BYTES = 1 << 20
_pool = SharedPool("fzpack-planes")


def decode_planes(stored: bytes | memoryview, raw_length: int, itemsize: int, out: np.ndarray | None = None) -> np.ndarray:
    """Decode a codec 3 payload to exactly ``raw_length`` bytes (a uint8 array, ``out`` if given).

    Every field is checked before it is used: the rotation, each plane's coder and length (within
    the payload), a zstd plane's declared size, an ANS plane's histogram; nothing may follow the
    last plane.
    """
    from fzpack.codecs.values import zstd_decompress_exact

    if itemsize not in ITEMSIZES:
        raise CodecError(f"planes: itemsize {itemsize} is not 2, 4 or 8")
    if raw_length % itemsize:
        raise CodecError(f"planes: {raw_length} bytes are not a whole number of {itemsize}-byte items")
    n = raw_length // itemsize
    r = Reader(stored, "planes payload")
    try:
        k = r.u8()
        if k >= 8 * itemsize:
            raise CodecError(f"planes: rotation {k} is not below {8 * itemsize}")
        fields = []
        for j in range(itemsize):
            coder = r.u8()
            length = r.varint(limit=r.remaining, what=f"plane {j} length")
            body = r.raw_view(length)
            if coder == CODER_RAW and length != n:
                raise CodecError(f"planes: raw plane {j} holds {length} bytes, {n} expected")
            if coder not in (CODER_RAW, CODER_ZSTD, CODER_ANS):
                raise CodecError(f"planes: unknown plane coder {coder}")
            fields.append((coder, body))
        r.expect_end()
    except FormatError as e:  # a truncated field: this stream's error
        raise CodecError(str(e)) from e

    def plane(field: tuple[int, memoryview]) -> np.ndarray:
        coder, body = field
        if coder == CODER_RAW:
            return np.frombuffer(body, np.uint8)
        if coder == CODER_ZSTD:
            return np.frombuffer(zstd_decompress_exact(body, n), np.uint8)
        decoded = np.empty(n, np.uint8)
        decode_ans(body, n, decoded)
        return decoded

    # Large zstd planes decode two at a time (zstd releases the GIL); results and the first error
    # in plane order are those of the sequential loop.
    parallel = n >= PARALLEL_PLANE_BYTES
    if parallel and sum(c == CODER_ZSTD for c, _ in fields) >= 2:
        futures = [_pool.get(2).submit(plane, f) for f in fields]
        planes = [f.result() for f in futures]
    else:
        planes = [plane(f) for f in fields]
    if out is None:
        out = np.empty(raw_length, np.uint8)
    elif out.size != raw_length or out.dtype != np.uint8:
        raise ValueError("planes: output buffer of the wrong size")
    if parallel:  # two halves of the items (whole chunks) on two threads: numpy releases the GIL
        half = (n // 2 + CHUNK - 1) // CHUNK * CHUNK
        second = _pool.get(2).submit(merge, planes, k, itemsize, out, half, n)
        merge(planes, k, itemsize, out, 0, half)
        second.result()
    elif n:
        merge(planes, k, itemsize, out)
    return out

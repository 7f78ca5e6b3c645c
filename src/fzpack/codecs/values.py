"""Stream codecs for tensor values, index data and the header tree (formats/fzpack-v1.md §3.2).

A stream's raw bytes are coded with whichever of RAW, ZSTD or BYTEGROUP_ZSTD is smallest, and
the choice is recorded in the stream table. Byte-grouping puts byte 0 of every element first,
then byte 1, ...: the exponent bytes of floats line up and zstd finds them (FIELD.md §5).
Floating-point values streams of 16 KiB and more get PLANES (codec 3, format 1.2,
:mod:`fzpack.codecs.planes`) instead: rotated byte planes coded near their entropy, smaller than
ZipNN. The opt-in lossy codecs (ids 16-18) live in :mod:`fzpack.codecs.lossy`;
:func:`decode_stream` dispatches to them.
"""

from __future__ import annotations

import numpy as np
import zstandard

from fzpack.errors import CodecError

RAW, ZSTD, BYTEGROUP_ZSTD = 0, 1, 2
PLANES = 3  # format 1.2: rotated byte planes, each raw / zstd / ANS (codecs/planes.py)
CAST_FP16, CAST_BF16, Q8 = 16, 17, 18  # lossy: decoded bytes are the dtype's, the payload is not
LOSSY_CODECS = frozenset({CAST_FP16, CAST_BF16, Q8})
CODEC_NAMES = {RAW: "raw", ZSTD: "zstd", BYTEGROUP_ZSTD: "bytegroup-zstd", PLANES: "planes", CAST_FP16: "cast-fp16",
               CAST_BF16: "cast-bf16", Q8: "q8"}
#: Codecs that need format 1.2 (section 2.1): a file records minor 2 only when a stream uses one.
CODECS_1_2 = frozenset({PLANES})

# zstd-19 runs at a few MB/s: worth it for small streams, too slow for a dense 60 MB checkpoint.
_SMALL_STREAM = 4 << 20


def _level(n: int, slow: bool = True) -> int:
    return 19 if n <= _SMALL_STREAM and slow else 3


def _zstd(raw: bytes, slow: bool = True) -> bytes:
    threads = 2 if len(raw) > _SMALL_STREAM else 0
    cctx = zstandard.ZstdCompressor(level=_level(len(raw), slow), write_content_size=True, threads=threads)
    return cctx.compress(raw)


def group_bytes(raw: bytes, itemsize: int) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(-1, itemsize).T.tobytes()


def ungroup_bytes(grouped: bytes, itemsize: int) -> bytes:
    return np.frombuffer(grouped, np.uint8).reshape(itemsize, -1).T.tobytes()


def encode_stream(raw: bytes, itemsize: int = 1, candidates: tuple[int, ...] = (RAW, ZSTD, BYTEGROUP_ZSTD), *,
                  slow: bool = True) -> tuple[int, bytes]:
    """Code ``raw`` with the smallest of ``candidates``; returns (codec id, stored bytes).

    ``slow`` (default) codes streams up to 4 MiB with zstd-19, else zstd-3.
    """
    best = (RAW, raw)
    if not raw:
        return best
    for codec in candidates:
        if codec == ZSTD:
            out = _zstd(raw, slow)
        elif codec == BYTEGROUP_ZSTD and itemsize > 1 and len(raw) % itemsize == 0:
            out = _zstd(group_bytes(raw, itemsize), slow)
        else:
            continue
        if len(out) < len(best[1]):
            best = (codec, out)
    return best


#: Floating values streams at least this long are coded with PLANES (shorter ones: codecs 0-2, as before 1.2).
PLANES_MIN = 16 << 10


def encode_values(raw: bytes | memoryview | np.ndarray, itemsize: int, floating: bool, *, slow: bool = True,
                  threads: int = 0) -> tuple[int, bytes]:
    """Code a values stream: PLANES for floating streams of PLANES_MIN bytes and more, else :func:`encode_stream`.

    Args:
        raw: the stream's bytes (not copied).
        itemsize: bytes per element.
        floating: the stream holds a floating dtype (float16/bfloat16/float32/float64).
        slow: small streams may use the slow coders (zstd-19, ANS planes); the writer turns this
            off once a file has spent its budget on them, so that compress and restore stay fast.
        threads: zstd worker threads for large planes.
    """
    n = len(raw) if not isinstance(raw, np.ndarray) else raw.nbytes
    if floating and itemsize in (2, 4, 8) and n >= PLANES_MIN and n % itemsize == 0:
        from fzpack.codecs.planes import encode_planes

        payload = encode_planes(raw, itemsize, slow=slow and n <= _SMALL_STREAM, threads=threads)
        return (PLANES, payload) if len(payload) < n else (RAW, bytes(raw))
    raw = bytes(raw) if not isinstance(raw, bytes) else raw
    return encode_stream(raw, itemsize, slow=slow)


def decode_stream(codec: int, stored: bytes, raw_length: int, itemsize: int = 1) -> bytes:
    """Inverse of :func:`encode_stream` (and of the lossy codecs); never produces more than ``raw_length`` bytes."""
    if codec == PLANES:
        from fzpack.codecs.planes import decode_planes

        return decode_planes(stored, raw_length, itemsize).data.cast("B") if raw_length else b""
    if codec in LOSSY_CODECS:
        from fzpack.codecs.lossy import decode_lossy  # lossy builds on this module

        return decode_lossy(codec, bytes(stored), raw_length, itemsize)
    if codec == RAW:
        if len(stored) != raw_length:
            raise CodecError(f"raw stream holds {len(stored)} bytes, header says {raw_length}")
        return stored
    if codec not in (ZSTD, BYTEGROUP_ZSTD):
        raise CodecError(f"unknown stream codec id {codec}")
    if codec == BYTEGROUP_ZSTD and (itemsize < 2 or raw_length % itemsize):
        raise CodecError(f"byte-grouped stream of {raw_length} bytes cannot hold {itemsize}-byte items")
    raw = zstd_decompress_exact(stored, raw_length)
    return ungroup_bytes(raw, itemsize) if codec == BYTEGROUP_ZSTD else raw


def _tree_dict() -> zstandard.ZstdCompressionDict:
    from fzpack.container.tree import TREE_DICTIONARY

    return zstandard.ZstdCompressionDict(TREE_DICTIONARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def zstd_dict_compress(raw: bytes) -> bytes:
    """zstd-19 with the format's fixed tree dictionary (formats/fzpack-v1.md §5.1)."""
    return zstandard.ZstdCompressor(level=19, dict_data=_tree_dict(), write_dict_id=False, write_content_size=True).compress(raw)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def zstd_frame_length(data: bytes | memoryview) -> int:
    """Bytes taken by the one Zstandard frame at the start of ``data`` (RFC 8878 section 3.1.1).

    Walks the frame header and the block headers only (no decompression), like libzstd's
    ZSTD_findFrameCompressedSize. Also enforces what fzpack requires of its frames: the zstd
    magic (no skippable frame), reserved bit 0, and no dictionary ID.
    """
    data = memoryview(data)
    if bytes(data[:4]) != ZSTD_MAGIC:
        raise CodecError("not a zstd frame (bad magic number)")
    fhd = data[4] if len(data) > 4 else 0
    if fhd & 0x08:
        raise CodecError("zstd frame header: reserved bit set")
    if fhd & 0x03:
        raise CodecError("zstd frame declares a dictionary ID; fzpack frames carry none")
    try:
        pos = zstandard.frame_header_size(bytes(data[:18]))
    except zstandard.ZstdError as e:
        raise CodecError(f"corrupt zstd frame header: {e}") from e
    while True:
        if pos + 3 > len(data):
            raise CodecError("zstd frame is truncated inside a block header")
        head = int.from_bytes(data[pos : pos + 3], "little")
        kind, size = (head >> 1) & 3, head >> 3
        if kind == 3:
            raise CodecError("zstd frame has a reserved block type")
        pos += 3 + (1 if kind == 1 else size)
        if head & 1:
            break
    pos += 4 if fhd & 0x04 else 0  # content checksum
    if pos > len(data):
        raise CodecError("zstd frame is truncated")
    return pos


def zstd_decompress_exact(stored: bytes, raw_length: int, *, tree_dict: bool = False) -> bytes:
    """Decompress one zstd frame that must declare exactly ``raw_length`` bytes of content.

    The declared size is checked before decompressing: zstandard ignores ``max_output_size``
    when a frame declares its size, so a lying frame would otherwise expand without bound. The
    payload must be exactly one frame: zstandard silently ignores bytes after the first frame,
    which would let two readers disagree about a file.
    """
    try:
        declared = zstandard.frame_content_size(stored)
    except zstandard.ZstdError as e:
        raise CodecError(f"not a zstd frame: {e}") from e
    if declared != raw_length:
        raise CodecError(f"zstd frame declares {declared} bytes, header says {raw_length}")
    end = zstd_frame_length(stored)
    if end != len(stored):
        raise CodecError(f"{len(stored) - end} bytes follow the zstd frame (a payload is exactly one frame)")
    try:
        dctx = zstandard.ZstdDecompressor(dict_data=_tree_dict()) if tree_dict else zstandard.ZstdDecompressor()
        out = dctx.decompress(stored, max_output_size=raw_length)
    except zstandard.ZstdError as e:
        raise CodecError(f"corrupt zstd stream: {e}") from e
    if len(out) != raw_length:
        raise CodecError(f"zstd stream decoded to {len(out)} bytes, header says {raw_length}")
    return out

"""The outer layer of a `.fzp` file: preamble, checksummed header, checksummed streams (§2).

    offset  size  field
    0       8     magic 89 46 5A 50 0D 0A 1A 0A
    8       1     major version (1)
    9       1     minor version (0)
    10      2     flags (0)
    12      4     header length H (u32 LE)
    16      4     CRC-32 of the header body
    20      H     header body (layout.py)
    20+H    ...   stream payloads, back to back in stream-table order, nothing after them
"""

from __future__ import annotations

import struct
import zlib

from fzpack.container.layout import (
    ALIAS, MAGIC, MAX_HEADER_BYTES, PREAMBLE_SIZE, VERSION, Header, decode_header, encode_header, itemsize, minor_version,
)
from fzpack.errors import FormatError

#: The reader's default memory budget (formats/fzpack-v1.md section 6, step 5).
DEFAULT_MAX_BYTES = 16 << 30


def crc32(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def write_container(header: Header, stored: list[bytes]) -> bytes:
    """Serialize a header and its stream payloads; fills in stored lengths and checksums."""
    if len(stored) != len(header.streams):
        raise ValueError("one payload per stream table entry")
    for entry, payload in zip(header.streams, stored):
        entry.stored_length = len(payload)
        entry.crc32 = crc32(payload)
    body = encode_header(header)
    if len(body) > MAX_HEADER_BYTES:
        raise FormatError(f"header of {len(body)} bytes exceeds the format's {MAX_HEADER_BYTES} byte limit")
    pre = MAGIC + struct.pack("<BBHII", VERSION[0], minor_version(header), 0, len(body), crc32(body))
    return b"".join([pre, body, *stored])


def read_preamble(data: bytes | memoryview) -> tuple[int, int, int]:
    """Validate magic, version and flags; returns (header length, header crc, minor version)."""
    if len(data) < PREAMBLE_SIZE:
        raise FormatError(f"file is {len(data)} bytes, too short to be an fzpack file")
    if bytes(data[:8]) != MAGIC:
        raise FormatError("not an fzpack file (bad magic bytes)")
    major, minor, flags, hlen, hcrc = struct.unpack("<BBHII", data[8:PREAMBLE_SIZE])
    if (major, minor) > VERSION:
        raise FormatError(
            f"format version {major}.{minor} is newer than this fzpack understands "
            f"({VERSION[0]}.{VERSION[1]}); upgrade fzpack"
        )
    if major != VERSION[0]:
        raise FormatError(f"unsupported format version {major}.{minor}")
    if flags:
        raise FormatError(f"unknown preamble flags {flags:#06x}")
    if hlen > MAX_HEADER_BYTES or hlen > len(data) - PREAMBLE_SIZE:
        raise FormatError(f"header length {hlen} does not fit in a file of {len(data)} bytes")
    return hlen, hcrc, minor


def restored_bytes(h: Header) -> int:
    """Memory a full restore needs by the format's accounting (section 6, step 5).

    The decoded tensors, every stream's decoded bytes (they coexist with the tensors while these
    are built) and every bank at 4 bytes per element (a reader may materialise a bank).
    """
    tensors = sum(t.numel * itemsize(t.dtype) for t in h.tensors if t.kind != ALIAS)
    return tensors + sum(s.raw_length for s in h.streams) + 4 * sum(length for _, length in h.banks)


def check_budget(h: Header, max_bytes: int) -> None:
    need = restored_bytes(h)
    if need > max_bytes:
        raise FormatError(f"restoring needs {need:,} bytes of memory, over the limit of {max_bytes:,}; "
                          "raise max_bytes if you trust this file")


def read_container(data: bytes | memoryview, max_bytes: int | None = None) -> tuple[Header, list[memoryview]]:
    """Parse and check a whole file: returns the header and each stream's stored bytes.

    Order (formats/fzpack-v1.md section 6): preamble, header checksum, header parse and
    cross-checks, stream lengths against the file size, the memory budget (when ``max_bytes``
    is given: a reader that will restore), then every stream's checksum. A file that is too
    big to restore is refused before a single stream byte is hashed.
    """
    view = memoryview(data)
    hlen, hcrc, minor = read_preamble(view)
    body = view[PREAMBLE_SIZE : PREAMBLE_SIZE + hlen]
    if crc32(body) != hcrc:
        raise FormatError("header checksum mismatch: the file is corrupted")
    header = decode_header(bytes(body), minor)
    pos = PREAMBLE_SIZE + hlen
    total = sum(s.stored_length for s in header.streams)
    if total != len(view) - pos:
        raise FormatError(f"streams should take {total} bytes after the header but {len(view) - pos} are there (truncated or padded file)")
    if max_bytes is not None:
        check_budget(header, max_bytes)
    payloads = []
    for i, s in enumerate(header.streams):
        p = view[pos : pos + s.stored_length]
        if crc32(p) != s.crc32:
            raise FormatError(f"stream {i} checksum mismatch: the file is corrupted")
        payloads.append(p)
        pos += s.stored_length
    return header, payloads

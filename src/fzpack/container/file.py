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

import os
import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from fzpack.container.layout import (
    ALIAS, FLAG_ADDITIVE, FLAG_DENSE, FLAG_MASK_FROM_SEED, FROZEN, MAGIC, MAX_HEADER_BYTES, PREAMBLE_SIZE, ROLE_INDEX, VERSION,
    Header, check_minor, decode_header, encode_header, itemsize, mask_models, minor_version,
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
    # a hand-built (possibly hostile) header may point past its payloads: no byte, no model
    models = mask_models(header, lambda s, at: stored[s][at] if s < len(stored) and at < len(stored[s]) else None)
    return b"".join([encode_head(header, models), *stored])


def encode_head(header: Header, models: Iterable[int] = ()) -> bytes:
    """Preamble and header body of a file whose stream entries are complete (lengths, checksums).

    ``models``: the model ids of the file's mask payloads (they decide the minor version too).
    """
    body = encode_header(header)
    if len(body) > MAX_HEADER_BYTES:
        raise FormatError(f"header of {len(body)} bytes exceeds the format's {MAX_HEADER_BYTES} byte limit")
    return MAGIC + struct.pack("<BBHII", VERSION[0], minor_version(header, models), 0, len(body), crc32(body)) + body


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


def streamed_bytes(h: Header) -> int:
    """Memory and output a restore *to a file* needs when it writes one tensor at a time (section 6, step 5).

    The output file holds every tensor, so their sum stays in the bound (a tiny file describing
    terabytes of frozen weights is refused, not written). In memory: the tensor being made and the
    stream it comes from (the largest of each); every stream two or more tensors take bytes from
    and every index stream (kept until their last tensor); and every frozen tensor's mask and
    offsets (made with the tensor, written later).
    """
    sizes = [t.numel * itemsize(t.dtype) for t in h.tensors if t.kind != ALIAS]
    users: dict[int, int] = {}
    held = 0
    for t in h.tensors:
        if t.kind == ALIAS:
            continue
        used = [t.stream]
        if t.kind == FROZEN:
            held += t.numel + (t.k * itemsize(t.dtype) if t.flags & FLAG_ADDITIVE else 0)
            if not t.flags & FLAG_MASK_FROM_SEED:
                used.append(t.mask_stream)
            if t.n_exceptions and not t.flags & FLAG_DENSE:
                used.append(t.index_stream)
        for i in used:
            users[i] = users.get(i, 0) + 1
    lengths = [s.raw_length for s in h.streams]
    kept = sum(n for i, n in enumerate(lengths) if users.get(i, 0) > 1 or h.streams[i].role == ROLE_INDEX)
    return (sum(sizes) + max(sizes, default=0) + max(lengths, default=0) + kept + held
            + 4 * sum(length for _, length in h.banks))


def check_budget(h: Header, max_bytes: int, need_of: Callable[[Header], int] = restored_bytes) -> None:
    need = need_of(h)
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
    c = open_container(view, max_bytes)
    return c.header, [view[off:off + s.stored_length] for off, s in zip(c.offsets, c.header.streams)]


#: Bytes hashed per read while the stream checksums are checked (the file is never read whole).
CRC_CHUNK = 8 << 20


class Container:
    """A checked `.fzp` file whose stream payloads are read one at a time, on request.

    ``open_container`` has done steps 1-6 of section 6 (every checksum included) before this
    exists; :meth:`payload` reads one stream's stored bytes (from the file, or a view of the
    bytes given) and checks its CRC again, so a file changed on disk after opening is an error,
    never a silently different tensor. Close it (or use it as a context manager) when done.
    """

    def __init__(self, header: Header, offsets: list[int], read_at: Callable[[int, int], bytes | memoryview],
                 close: Callable[[], None] | None = None, size: int = 0, header_length: int = 0) -> None:
        self.header = header
        self.offsets = offsets  # file offset of each stream's payload
        self._read_at = read_at
        self._close = close
        self.size = size
        self.header_length = header_length

    def payload(self, i: int) -> bytes | memoryview:
        s = self.header.streams[i]
        data = self._read_at(self.offsets[i], s.stored_length)
        if crc32(data) != s.crc32:
            raise FormatError(f"stream {i} checksum mismatch: the file changed while it was read")
        return data

    def prefix(self, i: int, n: int) -> bytes:
        """The first ``n`` stored bytes of stream ``i`` (fewer if it is shorter), unchecked."""
        return bytes(self._read_at(self.offsets[i], min(n, self.header.streams[i].stored_length)))

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pread_exact(fd: int, offset: int, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        b = os.pread(fd, n - got, offset + got)
        if not b:
            raise FormatError("the file was truncated while it was read")
        parts.append(b)
        got += len(b)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def open_container(src: str | os.PathLike | bytes | bytearray | memoryview, max_bytes: int | None = None,
                   need_of: Callable[[Header], int] = restored_bytes) -> Container:
    """Check a `.fzp` file (path or bytes) like :func:`read_container`, without holding its streams in memory.

    Steps 1-5 of section 6 read only the preamble and the header; step 6 hashes each stream in
    chunks of CRC_CHUNK bytes (a path is never read whole), so a file is refused for its budget
    before a byte of a stream is read and for a checksum before a byte is decoded.

    Args:
        src: the file's path, or its bytes.
        max_bytes: the memory budget (None: not checked, as for a reader that only describes).
        need_of: what the budget counts: :func:`restored_bytes` (a restore into memory) or
            :func:`streamed_bytes` (a restore to a file, one stream at a time).
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        view = memoryview(src)
        return _open(len(view), lambda off, n: view[off:off + n], None, max_bytes, need_of)
    path = Path(src)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        from fzpack.errors import FzpackError

        raise FzpackError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        size = os.fstat(fd).st_size
        return _open(size, lambda off, n: _pread_exact(fd, off, n), lambda: os.close(fd), max_bytes, need_of)
    except BaseException:
        os.close(fd)
        raise


def _open(size: int, read_at: Callable[[int, int], bytes | memoryview], close: Callable[[], None] | None,
          max_bytes: int | None, need_of: Callable[[Header], int]) -> Container:
    pre = read_at(0, min(size, PREAMBLE_SIZE))
    hlen, hcrc, minor = read_preamble(_Sized(pre, size))
    body = read_at(PREAMBLE_SIZE, hlen)
    if crc32(body) != hcrc:
        raise FormatError("header checksum mismatch: the file is corrupted")
    header = decode_header(bytes(body), minor)
    pos = PREAMBLE_SIZE + hlen
    total = sum(s.stored_length for s in header.streams)
    if total != size - pos:
        raise FormatError(f"streams should take {total} bytes after the header but {size - pos} are there (truncated or padded file)")
    if max_bytes is not None:
        check_budget(header, max_bytes, need_of)
    offsets = []
    for i, s in enumerate(header.streams):
        crc = 0
        for a in range(0, s.stored_length, CRC_CHUNK):
            crc = zlib.crc32(read_at(pos + a, min(CRC_CHUNK, s.stored_length - a)), crc)
        if crc & 0xFFFFFFFF != s.crc32:
            raise FormatError(f"stream {i} checksum mismatch: the file is corrupted")
        offsets.append(pos)
        pos += s.stored_length
    # The minor version against the mask models too (section 2.1): byte 0 of each mask payload.
    check_minor(header, minor, mask_models(header, lambda s, at: read_at(offsets[s] + at, 1)[0]))
    return Container(header, offsets, read_at, close, size, hlen)


class _Sized:
    """The preamble's bytes, with ``len`` the whole file's size (read_preamble bounds H by it)."""

    def __init__(self, data: bytes | memoryview, size: int) -> None:
        self._data, self._size = data, size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key):
        return self._data[key]

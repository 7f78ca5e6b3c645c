"""Write-then-rename, so a failure, a Ctrl-C or a SIGKILL never leaves a partial output file behind.

The bytes go to a temporary file in the output's directory, ``.<name>.<pid>.<random>.tmp``, which
is flushed, fsynced and then renamed over the output (``os.replace``: atomic on POSIX, so a
concurrent reader sees the old file or the new one, never a mix, and of two concurrent writers
the last rename wins with a complete file). On an error the temporary file is removed and the
error is one :class:`OutputError` line naming the output. A process killed with SIGKILL cannot
remove its temporary file: it stays, under its dot-name (never the output's name), until the next
write of the same output removes it - only once the process that made it is gone, so a
concurrent writer's file is never touched.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from fzpack.errors import OutputError

TEMP_SUFFIX = ".tmp"


def temp_prefix(path: str | os.PathLike) -> str:
    """The name every temporary file of ``path`` starts with (the pid of its writer follows)."""
    return f".{Path(path).name}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or not a pid: leave the file alone
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files of ``path`` left by writers that no longer run (a SIGKILL); returns them."""
    path = Path(path)
    prefix = temp_prefix(path)
    removed = []
    try:
        candidates = [p for p in (path.parent or Path(".")).iterdir() if p.name.startswith(prefix) and p.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return removed
    for p in candidates:
        pid = p.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem lets a directory be fsynced)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Tracked:
    """The temporary file as ``write`` sees it: it remembers the first OS error of a write or flush.

    ``torch.save`` turns a failed write (EFBIG, ENOSPC) into a ``RuntimeError`` about a zip position;
    the remembered error lets ``write_atomic`` report the real cause in one line.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, b) -> int:
        try:
            return self._f.write(b)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``.

    Args:
        path: the output file; it is either left as it was or replaced by a complete new file.
        write: writes the whole content to the binary file object it is given.

    Raises:
        OutputError: the directory is not writable, the disk (or RLIMIT_FSIZE) is full, or another
            OS error; the temporary file is gone and ``path`` untouched. Errors raised by
            ``write`` itself propagate as they are, after the same cleanup.

    Example:
        >>> write_atomic("model.fzp", lambda f: f.write(data))
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    remove_stale_temps(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{temp_prefix(path)}{os.getpid()}.", suffix=TEMP_SUFFIX, dir=directory)
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)  # mkstemp makes 0600; outputs should look like any other file
            tracked = _Tracked(f)
            try:
                write(tracked)  # type: ignore[arg-type]
            except Exception as e:
                if tracked.error is not None and not isinstance(e, OSError):
                    raise tracked.error from e  # the disk's error, not what the serializer made of it
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(directory)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """:func:`write_atomic` of ``data``."""
    write_atomic(path, lambda f: f.write(data))


class StreamSpool:
    """A temporary file beside ``path`` for data written before what must precede it is known.

    ``fzpack.pack.pack_file`` writes each stream's payload here as soon as it is coded (the
    header, which precedes the streams in a `.fzp` file, is only known at the end), then copies
    it into the output's own temporary file with :meth:`copy_to` (``copy_file_range``: the
    kernel copies, no user memory). The file is created on the first write, named like
    :func:`write_atomic`'s temporary files (so a SIGKILLed writer's file is removed by the next
    write of ``path``) and removed when the spool closes. OS errors are one :class:`OutputError`
    naming ``path``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.size = 0
        self._f: BinaryIO | None = None
        self._tmp: str | None = None

    def __enter__(self) -> "StreamSpool":
        remove_stale_temps(self.path)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _error(self, e: OSError) -> OutputError:
        return OutputError(f"cannot write {self.path}: {e.strerror or e}")

    def write(self, data) -> None:
        """Append ``data`` (bytes or any buffer) to the spool."""
        try:
            if self._f is None:
                directory = self.path.parent if str(self.path.parent) else Path(".")
                fd, self._tmp = tempfile.mkstemp(prefix=f"{temp_prefix(self.path)}{os.getpid()}.", suffix=TEMP_SUFFIX,
                                                 dir=directory)
                self._f = os.fdopen(fd, "wb")
            self._f.write(data)
        except OSError as e:
            raise self._error(e) from e
        self.size += len(data)

    def reset(self) -> None:
        """Forget what was written (the writer starts over)."""
        if self._f is not None:
            try:
                self._f.seek(0)
                self._f.truncate()
            except OSError as e:
                raise self._error(e) from e
        self.size = 0

    def copy_to(self, f: BinaryIO) -> None:
        """Append everything written so far to ``f`` (a real file: ``copy_file_range``; else read and write)."""
        if self._f is None or not self.size:
            return
        self._f.flush()
        src = self._f.fileno()
        try:
            f.flush()
            dst, pos = f.fileno(), f.tell()
        except (OSError, AttributeError, ValueError):
            dst = None
        done = 0
        if dst is not None and hasattr(os, "copy_file_range"):
            try:
                while done < self.size:
                    n = os.copy_file_range(src, dst, self.size - done, done, pos + done)
                    if n <= 0:
                        break
                    done += n
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                    raise
            f.seek(pos + done)
        buf = bytearray(8 << 20)
        while done < self.size:  # no copy_file_range here: through user space, 8 MiB at a time
            n = os.preadv(src, [memoryview(buf)[: min(len(buf), self.size - done)]], done)
            if n <= 0:
                raise OSError(errno.EIO, "the temporary streams file is shorter than what was written to it")
            f.write(memoryview(buf)[:n])
            done += n

    def close(self) -> None:
        """Close and remove the spool file (idempotent)."""
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
        if self._tmp is not None:
            Path(self._tmp).unlink(missing_ok=True)
            self._tmp = None

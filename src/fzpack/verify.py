"""`fzpack.verify`: checksums, a full decode, and optionally a bit-for-bit comparison with the source."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from fzpack.checkpoint import load_checkpoint
from fzpack.equality import tree_differences
from fzpack.restore import read_file
from fzpack.unpack import DEFAULT_MAX_BYTES, unpack


@dataclass
class VerifyReport:
    ok: bool
    tensors: int
    compared: bool
    differences: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(path: str | os.PathLike, against: str | os.PathLike | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> VerifyReport:
    """Check a `.fzp` file end to end.

    Args:
        path: the `.fzp` file.
        against: optional original `.pt`; the restored object must equal it bit for bit.

    Returns:
        A :class:`VerifyReport`; corrupted files raise :class:`fzpack.FormatError` instead.

    Example:
        >>> fzpack.verify("model.fzp", against="model.pt").ok
        True
    """
    un = unpack(read_file(path), max_bytes=max_bytes)
    if against is None:
        return VerifyReport(ok=True, tensors=len(un.tensors), compared=False)
    diffs = tree_differences(load_checkpoint(against), un.obj)
    return VerifyReport(ok=not diffs, tensors=len(un.tensors), compared=True, differences=diffs)

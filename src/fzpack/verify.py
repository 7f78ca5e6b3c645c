"""`fzpack.verify`: checksums, a full decode, and optionally a comparison with the source.

The comparison is bit for bit by default. A lossy file (``compress --values fp16|bf16|q8``)
differs from its source by design; ``tolerance`` / ``rtol`` let it pass within its documented
error bound, and the report always carries the largest difference it measured.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from fzpack.checkpoint import load_checkpoint
from fzpack.codecs.values import LOSSY_CODECS
from fzpack.equality import max_abs_difference, tree_differences
from fzpack.restore import read_file
from fzpack.unpack import DEFAULT_MAX_BYTES, unpack


@dataclass
class VerifyReport:
    ok: bool
    tensors: int
    compared: bool
    differences: list[str] = field(default_factory=list)
    lossy: bool = False
    max_abs_error: float | None = None  # measured against ``against`` (None when not compared)
    tolerance: float | None = None
    rtol: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(path: str | os.PathLike | bytes, against: str | os.PathLike | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES,
           tolerance: float | None = None, rtol: float = 0.0) -> VerifyReport:
    """Check a `.fzp` file end to end.

    Args:
        path: the `.fzp` file (or its bytes, as for ``restore`` and ``inspect``).
        against: optional original `.pt`; the restored object must equal it bit for bit, or,
            with ``tolerance``, its floating tensors must be within ``tolerance + rtol * |x|``.
        max_bytes: refuse files whose tensors would need more memory than this.
        tolerance: absolute tolerance for floating tensors (None: bit-exact).
        rtol: relative tolerance, used with ``tolerance`` (e.g. ``2**-11`` for an fp16 file).

    Returns:
        A :class:`VerifyReport`; corrupted files raise :class:`fzpack.FormatError` instead.

    Example:
        >>> fzpack.verify("model.fzp", against="model.pt").ok
        True
        >>> fzpack.verify("model-q8.fzp", against="model.pt", tolerance=1e-3).max_abs_error
    """
    data = path if isinstance(path, (bytes, bytearray)) else read_file(path)
    un = unpack(data, max_bytes=max_bytes)
    lossy = any(s.codec in LOSSY_CODECS for s in un.header.streams)
    if against is None:
        return VerifyReport(ok=True, tensors=len(un.tensors), compared=False, lossy=lossy)
    if tolerance is None and rtol:
        tolerance = 0.0
    original = load_checkpoint(against)
    diffs = tree_differences(original, un.obj, atol=tolerance, rtol=rtol)
    return VerifyReport(ok=not diffs, tensors=len(un.tensors), compared=True, differences=diffs, lossy=lossy,
                        max_abs_error=max_abs_difference(original, un.obj), tolerance=tolerance, rtol=rtol)

"""`fzpack.compress`: a checkpoint in, a `.fzp` file out, with an honest size report."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fzpack.atomic import write_bytes_atomic
from fzpack.checkpoint import load_checkpoint
from fzpack.container.layout import PREAMBLE_SIZE
from fzpack.pack import pack
from fzpack.sizes import breakdown, dense_fp32_bytes


@dataclass
class CompressReport:
    """What ``compress`` wrote and where its bytes went."""

    output: str | None
    input_bytes: int | None
    output_bytes: int
    dense_fp32_bytes: int
    factor: float
    breakdown: dict[str, int]
    frozen: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_output(src: str | os.PathLike) -> Path:
    p = Path(src)
    return p.with_suffix(".fzp") if p.suffix else p.with_name(p.name + ".fzp")


def compress(src: str | os.PathLike | Mapping[str, Any], dst: str | os.PathLike | None = None) -> CompressReport:
    """Compress a checkpoint losslessly into a `.fzp` file.

    Args:
        src: a `.pt` path (read with ``weights_only=True``) or an in-memory checkpoint object.
        dst: output path; default ``src`` with suffix `.fzp`. Required when ``src`` is an object.

    Returns:
        A :class:`CompressReport` (sizes, factor vs dense fp32, byte breakdown, notes).

    Example:
        >>> report = fzpack.compress("model.pt")
        >>> print(report.output_bytes, report.factor)
    """
    if isinstance(src, Mapping):
        if dst is None:
            raise ValueError("dst is required when compressing an in-memory checkpoint")
        obj, in_bytes = src, None
    else:
        obj, in_bytes = load_checkpoint(src), Path(src).stat().st_size
        dst = dst if dst is not None else default_output(src)
    result = pack(obj)
    write_bytes_atomic(dst, result.data)
    dense = dense_fp32_bytes(result.header)
    return CompressReport(
        output=str(dst), input_bytes=in_bytes, output_bytes=len(result.data), dense_fp32_bytes=dense,
        factor=dense / len(result.data), breakdown=breakdown(result.header, header_body_length(result.data)),
        frozen=result.frozen, notes=result.notes,
    )


def header_body_length(data: bytes) -> int:
    return int.from_bytes(data[12:16], "little") if len(data) >= PREAMBLE_SIZE else 0

"""`fzpack.compress`: a checkpoint in, a `.fzp` file out, with an honest size report.

Lossless by default; ``values="fp16" | "bf16" | "q8"`` opts in to a lossy codec for the trained
values of frozen tensors, and the report then says LOSSY with the error it measured by decoding.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from fzpack.checkpoint import load_mapped, release_pages
from fzpack.container.layout import ALIAS
from fzpack.codecs.lossy import BOUNDS
from fzpack.errors import FzpackError
from fzpack.pack import pack_file
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
    values: str = "lossless"
    lossy: bool = False
    max_abs_error: float = 0.0  # measured by decoding the lossy streams; 0.0 when lossless
    error_bound: str | None = None  # the codec's documented bound (formats/fzpack-v1.md §3.2.1)
    lossy_streams: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_output(src: str | os.PathLike) -> Path:
    p = Path(src)
    return p.with_suffix(".fzp") if p.suffix else p.with_name(p.name + ".fzp")


def compress(src: str | os.PathLike | Mapping[str, Any] | nn.Module, dst: str | os.PathLike | None = None, *,
             values: str = "lossless") -> CompressReport:
    """Compress a checkpoint into a `.fzp` file, losslessly unless ``values`` says otherwise.

    Args:
        src: a `.pt` path (read with ``weights_only=True``), an in-memory checkpoint object, or
            a model after ``fzpack.freeze_`` (its checkpoint, as ``fzpack.save`` would write it).
            A path is memory-mapped where the file allows it and coded tensor by tensor, each
            large tensor's pages dropped once it is written: the checkpoint is never held whole.
        dst: output path; default ``src`` with suffix `.fzp`. Required unless ``src`` is a path.
        values: ``lossless`` (default), or ``fp16``, ``bf16``, ``q8``: a lossy codec for the
            trained values of frozen tensors only (biases and other tensors stay lossless).

    Returns:
        A :class:`CompressReport` (sizes, factor vs dense fp32, byte breakdown, notes, and for a
        lossy file the max abs error measured by decoding it).

    Example:
        >>> report = fzpack.compress("model.pt")
        >>> print(report.output_bytes, report.factor)
        >>> fzpack.compress("model.pt", "model-q8.fzp", values="q8").max_abs_error
        >>> fzpack.compress(model, "model.fzp")          # a model after fzpack.freeze_
    """
    if isinstance(src, nn.Module):
        from fzpack.freeze import checkpoint_of

        src = checkpoint_of(src)
    release = None
    if isinstance(src, Mapping):
        if dst is None:
            raise FzpackError("dst is required when compressing a model or an in-memory checkpoint")
        obj, in_bytes = src, None
    else:
        # Memory-mapped: each large tensor is read, coded, written and its pages dropped in turn.
        obj, mapped = load_mapped(src)
        in_bytes = Path(src).stat().st_size
        dst = dst if dst is not None else default_output(src)
        release = release_pages if mapped else None
    result = pack_file(obj, dst, values, release=release)
    del obj
    dense = dense_fp32_bytes(result.header)
    notes = list(result.notes)
    if values != "lossless" and result.frozen and not result.lossy:
        notes.append(f"lossless coding was smaller than {values} for every trained stream: the file is lossless")
    streams = [{"stream": i, "tensors": [t.name for t in result.header.tensors if t.kind != ALIAS and t.stream == i],
                "codec": s.codec, "count": s.values, "max_abs_error": s.max_abs_error, "rms_error": s.rms_error, **s.detail}
               for i, s in result.lossy.items()]
    return CompressReport(
        output=str(dst), input_bytes=in_bytes, output_bytes=result.size, dense_fp32_bytes=dense,
        factor=dense / result.size, breakdown=breakdown(result.header, result.header_length),
        frozen=result.frozen, notes=notes, values=values, lossy=bool(result.lossy), max_abs_error=result.max_abs_error,
        error_bound=BOUNDS[values] if result.lossy else None, lossy_streams=streams,
    )

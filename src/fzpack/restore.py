"""`fzpack.restore`: a `.fzp` file back to the exact checkpoint object, or to a `.pt`/safetensors file."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from fzpack.atomic import write_atomic
from fzpack.errors import FzpackError
from fzpack.container.file import open_container, restored_bytes, streamed_bytes
from fzpack.unpack import DEFAULT_MAX_BYTES, Unpacked, unpack


def read_file(path: str | os.PathLike) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise FzpackError(f"no such file: {p}")
    return p.read_bytes()


def restore(path: str | os.PathLike | bytes, *, device: str | torch.device = "cpu", max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Load a `.fzp` file as the checkpoint object it was made from.

    Args:
        path: the file (or its bytes).
        device: where tensors are built; frozen weights are regenerated there bit-identically.
        max_bytes: refuse files whose tensors would need more memory than this.

    Returns:
        The object ``torch.load(weights_only=True)`` gave for the original checkpoint, bit for bit.

    Example:
        >>> ckpt = fzpack.restore("model.fzp")
        >>> model.load_state_dict(ckpt["state_dict"])
    """
    if isinstance(path, (bytes, bytearray)):
        return unpack(path, device=device, max_bytes=max_bytes).obj
    if not Path(path).is_file():
        raise FzpackError(f"no such file: {path}")
    return unpack(Path(path), device=device, max_bytes=max_bytes).obj  # read stream by stream, never whole


@dataclass
class RestoreReport:
    output: str
    format: str
    output_bytes: int
    tensors: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def restore_file(src: str | os.PathLike, dst: str | os.PathLike | None = None, *, format: str = "pt", max_bytes: int = DEFAULT_MAX_BYTES) -> RestoreReport:
    """Write the restored checkpoint as a `.pt` (torch.save) or `.safetensors` file.

    safetensors holds a flat name -> tensor map: the state dict's tensors are written as they are,
    each frozen tensor's mask as ``__fzpack_mask__.<name>``, and the rest of the checkpoint (the
    `fzpack` entry without its masks, other primitives) as JSON in ``__metadata__["fzpack"]``.

    Both formats are written one tensor at a time (:mod:`fzpack.stream_restore`): the process
    holds about one decoded stream and one tensor, never the whole checkpoint, and ``max_bytes``
    bounds the output plus that working set (formats/fzpack-v1.md section 6, step 5). A `.pt`
    of at most `IN_MEMORY_PT_BYTES` decoded bytes that fits ``max_bytes`` whole is restored in
    memory and written by ``torch.save`` instead (the streamed writer's first use costs ~1.4 s).
    """
    from fzpack.stream_restore import torch_streaming_available, write_pt, write_safetensors

    if format not in ("pt", "safetensors"):
        raise FzpackError(f"unknown output format {format!r}; use pt or safetensors")
    if not Path(src).is_file():
        raise FzpackError(f"no such file: {src}")
    dst = Path(dst) if dst is not None else Path(src).with_suffix(".pt" if format == "pt" else ".safetensors")
    un = _unpack_in_memory(Path(src), max_bytes, always=not torch_streaming_available()) if format == "pt" else None
    if un is not None:
        write_atomic(dst, lambda f: torch.save(un.obj, f))
        return RestoreReport(output=str(dst), format=format, output_bytes=dst.stat().st_size, tensors=len(un.tensors))
    # One tensor at a time: checked like any restore, but the budget counts one decoded stream.
    with open_container(Path(src), max_bytes, streamed_bytes) as c:
        writer = write_pt if format == "pt" else write_safetensors
        count: list[int] = []
        write_atomic(dst, lambda f: count.append(writer(c, f)))
    return RestoreReport(output=str(dst), format=format, output_bytes=dst.stat().st_size, tensors=count[0])


#: `restore -o x.pt` restores in memory the checkpoints whose restore needs at most this many bytes
#: (`restored_bytes`) and writes them
#: with torch.save; larger ones stream (fzpack.stream_restore), whose placeholders need torch's
#: FakeTensorMode, whose first use imports torch._dynamo and sympy (~1.4 s). Holding 64 MiB costs
#: less than that wait; larger files keep the streamed bound on memory.
IN_MEMORY_PT_BYTES = 64 << 20


def _unpack_in_memory(src: Path, max_bytes: int, always: bool) -> Unpacked | None:
    """The restored checkpoint when `restore -o x.pt` holds it whole, else None (it streams).

    ``always``: this torch lacks the serializer internals the streamed writer drives. Otherwise a
    file is held whole when a restore into memory needs at most IN_MEMORY_PT_BYTES by the format's
    accounting and the streamed writer's one-time set-up is still unpaid; one opening of the
    container (checksums included) serves both the decision and the restore.
    """
    if not always and "torch._dynamo" in sys.modules:  # what a first FakeTensorMode imports: already paid for
        return None
    try:
        c = open_container(src, max_bytes)
    except FzpackError:
        if always:
            raise
        return None  # over the in-memory budget, or broken: the streamed path checks and reports it
    with c:
        if not always and restored_bytes(c.header) > IN_MEMORY_PT_BYTES:
            return None
        return unpack(c)


def to_safetensors_bytes(obj: Any) -> bytes:
    """The safetensors file of a restored checkpoint, in memory (the layout of :func:`restore_file`)."""
    from safetensors.torch import save

    from fzpack.stream_restore import safetensors_header, safetensors_layout

    tensors, metadata = safetensors_layout(obj)
    safetensors_header(tensors, metadata)  # a dtype safetensors cannot store is a FormatError
    return save({k: v.contiguous().clone() for k, v in tensors.items()}, metadata=metadata)  # tied: two copies

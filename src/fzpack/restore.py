"""`fzpack.restore`: a `.fzp` file back to the exact checkpoint object, or to a `.pt`/safetensors file."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from fzpack.atomic import write_atomic, write_bytes_atomic
from fzpack.errors import FormatError, FzpackError
from fzpack.unpack import DEFAULT_MAX_BYTES, unpack

MASK_PREFIX = "__fzpack_mask__."


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
    """
    if format not in ("pt", "safetensors"):
        raise FzpackError(f"unknown output format {format!r}; use pt or safetensors")
    un = unpack(read_file(src), max_bytes=max_bytes)
    dst = Path(dst) if dst is not None else Path(src).with_suffix(".pt" if format == "pt" else ".safetensors")
    if format == "pt":
        write_atomic(dst, lambda f: torch.save(un.obj, f))
    else:
        write_bytes_atomic(dst, to_safetensors_bytes(un.obj))
    return RestoreReport(output=str(dst), format=format, output_bytes=dst.stat().st_size, tensors=len(un.tensors))


def to_safetensors_bytes(obj: Any) -> bytes:
    from safetensors.torch import save

    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return save({k: v.contiguous().clone() for k, v in obj.items()})
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise FormatError("this checkpoint is neither a flat state dict nor the fzpack convention; restore it with --format pt")
    tensors = {k: v.contiguous().clone() for k, v in obj["state_dict"].items()}
    rest: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "state_dict":
            continue
        if key == "fzpack":
            value = {**value, "tensors": {n: {"init": t["init"], "mask": MASK_PREFIX + n} for n, t in value["tensors"].items()}}
            for n, t in obj["fzpack"]["tensors"].items():
                tensors[MASK_PREFIX + n] = t["mask"].contiguous()
        rest[key] = value
    try:
        meta = json.dumps(rest, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise FormatError(f"entries besides the state dict are not JSON-representable ({e}); restore with --format pt") from e
    return save(tensors, metadata={"fzpack": meta})

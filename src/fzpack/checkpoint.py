"""The frozen-weight checkpoint convention: a plain `torch.save` dict any PyTorch user can load.

    {
      "state_dict": {name: tensor, ...},          # the dense weights, names as nn.Module has them
      "fzpack": {
        "convention": 1,
        "generator": "fzpack-philox4x64-10/v1",
        "seed": 1234,                              # 32-bit unsigned
        "method": "freezenet",                     # freezenet | snip | random-mask | dense | ...
        "tensors": {name: {"init": {...}, "mask": BoolTensor[, "delta": Tensor]}},  # frozen tensors only
        "banks": {bank_name: length},              # shared random weight banks (LCResNet)
        "arch": {"name": "lenet5-caffe", "config": {...}} or None,
        "metadata": {...},                         # free-form primitives
      },
      ...                                          # anything else (optimizer state, metrics)
    }

``mask`` is True where the entry is trained; every other entry of ``state_dict[name]`` is
expected to equal ``generate(init, seed, name, shape)`` (times ``init["scale"]`` when present).
``delta`` (DCT-plus-Sparse) holds the trained values as offsets: trained entries are then
``frozen value + delta`` instead of free values. The full rules are in
formats/checkpoint-v1.md. Loading always uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import mmap as mmap_module
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fzpack.atomic import write_atomic
from fzpack.errors import CheckpointError
from fzpack.generator import InitSpec, generate, init_spec
from fzpack.weights import prunable_weights

CONVENTION = 1
GENERATOR = "fzpack-philox4x64-10/v1"
INIT_KEYS = ("dist", "p0", "p1", "bank", "offset", "scheme", "scale")
ENTRY_KEYS = ("convention", "generator", "seed", "method", "tensors", "banks", "arch", "metadata")
TENSOR_KEYS = ("init", "mask", "delta")


@dataclass
class FrozenTensor:
    """One frozen tensor of the convention: how its frozen entries regenerate, which are trained."""

    spec: InitSpec
    mask: torch.Tensor
    scheme: str = ""
    scale: float | None = None  # FreezeNet-WD, DCTpS alpha: frozen entries are float32(generate(spec) * scale)
    delta: torch.Tensor | None = None  # DCTpS: trained entries are frozen value + delta[j] (mask order)

    def entry(self) -> dict[str, Any]:
        """The ``fzpack.tensors[name]`` dict of the convention (CPU copies)."""
        out: dict[str, Any] = {"init": self.init_dict(), "mask": self.mask.detach().to("cpu", torch.bool, copy=True)}
        if self.delta is not None:
            out["delta"] = self.delta.detach().to("cpu", copy=True)
        return out

    def init_dict(self) -> dict[str, Any]:
        """The canonical `init` entry of the convention (formats/checkpoint-v1.md)."""
        out: dict[str, Any] = {**self.spec.to_dict(), "scheme": self.scheme}
        if self.scale is not None:
            out["scale"] = self.scale
        return out


@dataclass
class FrozenInfo:
    """The validated `fzpack` entry of a checkpoint."""

    seed: int
    method: str
    tensors: dict[str, FrozenTensor]
    banks: dict[str, int] = field(default_factory=dict)
    arch: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def init_from_seed_(model: nn.Module, seed: int, scheme: str = "xavier_normal", names: list[str] | None = None, **kw: Any) -> dict[str, FrozenTensor]:
    """Overwrite weights with fzpack's regenerable init, in place.

    Args:
        model: any module; its parameters keep their identity, only their values change.
        seed: the 32-bit seed of the checkpoint.
        scheme: an init scheme of :mod:`fzpack.generator` (FreezeNet's default: xavier_normal).
        names: state-dict names to initialise; default every Linear/Conv weight.
        **kw: scheme options, e.g. ``gain`` or ``a``.

    Returns:
        ``{name: FrozenTensor}`` with all-False masks, ready for a mask to be attached.

    Example:
        >>> frozen = init_from_seed_(model, seed=7)
        >>> frozen["fc1.weight"].mask |= my_mask
    """
    params = dict(model.named_parameters())
    out = {}
    for name in names if names is not None else prunable_weights(model):
        if name not in params:
            raise CheckpointError(f"{name!r} is not a parameter of the model")
        p = params[name]
        spec = init_spec(scheme, tuple(p.shape), **kw)
        p.copy_(generate(spec, seed, name, tuple(p.shape), dtype=p.dtype, device=p.device))
        out[name] = FrozenTensor(spec=spec, mask=torch.zeros(p.shape, dtype=torch.bool), scheme=scheme)
    return out


def make_checkpoint(model: nn.Module | Mapping[str, torch.Tensor], frozen: Mapping[str, FrozenTensor], *, seed: int,
                    method: str = "freezenet", banks: Mapping[str, int] | None = None, arch: Mapping[str, Any] | None = None,
                    metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build a checkpoint dict in the convention (CPU copies; the model is not modified).

    Args:
        model: the trained module, or its state dict.
        frozen: per frozen tensor, its init spec and trained-entry mask.
        seed: the seed the frozen entries regenerate from.
        method: how the mask was chosen (freezenet, snip, random-mask, dense, ...).
        banks: shared random banks, name -> length.
        arch: ``{"name": registry name, "config": {...}}`` so tools can rebuild the module.
        metadata: free-form primitives (metrics, data set, epochs ...).

    Returns:
        A dict to pass to :func:`save_checkpoint` or straight to ``fzpack.compress``.
    """
    sd = model.state_dict() if isinstance(model, nn.Module) else model
    state = {k: v.detach().to("cpu", copy=True) for k, v in sd.items()}
    tensors = {name: ft.entry() for name, ft in frozen.items()}
    ckpt = {"state_dict": state, "fzpack": {
        "convention": CONVENTION, "generator": GENERATOR, "seed": int(seed), "method": method,
        "tensors": tensors, "banks": dict(banks or {}), "arch": dict(arch) if arch is not None else None,
        "metadata": dict(metadata or {})}}
    frozen_info(ckpt)  # fail now, not at compress time
    return ckpt


def save_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike) -> None:
    """`torch.save` to a temporary file beside ``path``, then rename: never a partial file."""
    write_atomic(path, lambda f: torch.save(dict(ckpt), f))


def load_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> Any:
    """Load a `.pt` file with ``weights_only=True``; any failure is one CheckpointError line.

    ``mmap=True`` maps a zip-format file (what ``torch.save`` writes) instead of reading it:
    tensors are read from disk when touched, so a caller that goes through them one at a time
    (``fzpack.compress``) never holds the whole checkpoint. Files that cannot be mapped (the
    legacy format) are loaded normally - always with ``weights_only=True``, never a full unpickle.
    """
    return load_mapped(path)[0] if mmap else _load(Path(path))


def load_mapped(path: str | os.PathLike) -> tuple[Any, bool]:
    """``load_checkpoint(path, mmap=True)`` and whether the file really is mapped (False: read normally)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    if not _native_zip(path):  # legacy format, a broken file (the normal load says what is wrong), or byte-swapped
        return _load(path), False
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True), True
    except Exception:  # whatever the mapped load refuses, the normal load reports as a CheckpointError
        return _load(path), False


def _native_zip(path: Path) -> bool:
    """Is ``path`` a torch zip file whose tensors load unchanged (no byte swap, which would write to the mapping)?

    torch byte-swaps in place the storages of a file saved on a machine of the other byte order;
    :func:`release_pages` on such a mapping would bring the unswapped bytes back, so it is not mapped.
    """
    try:
        with zipfile.ZipFile(path) as z:
            marks = [i for i in z.infolist() if i.filename.rsplit("/", 1)[-1] == "byteorder"]
            return all(i.file_size <= 8 and z.read(i).decode("ascii", "replace") == sys.byteorder for i in marks)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, RuntimeError, NotImplementedError):
        return False


def _load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if "Weights only load failed" not in text or not found:
            op = re.search(r"Unsupported operand \d+", text)
            raise CheckpointError(f"not a readable PyTorch checkpoint: invalid pickle data{f' ({op.group(0)})' if op else ''}") from e
        detail = f" (it calls {found.group(1)})"
        raise CheckpointError(
            f"refusing to load: unpickling this file would run code{detail}; fzpack only reads checkpoints "
            "that load with torch.load(weights_only=True) - re-save it as a plain state dict") from e
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError, AttributeError, KeyError, TypeError, IndexError) as e:
        raise CheckpointError(f"not a readable PyTorch checkpoint: {_first_line(str(e)) or type(e).__name__}") from e


def release_pages(t: torch.Tensor) -> None:
    """Drop the resident pages of a tensor of a checkpoint loaded with ``mmap=True`` (Linux; else nothing).

    Its storage is a private, unmodified mapping of the file: the pages are read again from the
    file if the tensor is touched later, so the data stays the same while the process's memory
    falls back. Never call this on a tensor that owns anonymous memory (its data would read as
    zeros).
    """
    global _madvise
    if sys.platform != "linux":
        return
    if _madvise is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _madvise = libc.madvise
        _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    st = t.untyped_storage()
    ptr, n, page = st.data_ptr(), st.nbytes(), mmap_module.PAGESIZE
    start, end = -(-ptr // page) * page, (ptr + n) // page * page
    if end > start:
        _madvise(start, end - start, 4)  # MADV_DONTNEED


_madvise = None


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else ""


def frozen_info(ckpt: Any) -> FrozenInfo | None:
    """Validate and parse the `fzpack` entry; None when the checkpoint has none."""
    if not isinstance(ckpt, Mapping) or "fzpack" not in ckpt:
        return None
    e = ckpt["fzpack"]
    if not isinstance(e, Mapping):
        raise CheckpointError("'fzpack' entry must be a dict")
    unknown = set(e) - set(ENTRY_KEYS)
    missing = {"convention", "seed", "tensors"} - set(e)
    if unknown or missing:
        raise CheckpointError(f"'fzpack' entry: unknown keys {sorted(unknown)} / missing keys {sorted(missing)}")
    if e["convention"] != CONVENTION:
        raise CheckpointError(f"'fzpack' entry: convention {e['convention']!r} is not supported (this fzpack reads {CONVENTION})")
    if e.get("generator", GENERATOR) != GENERATOR:
        raise CheckpointError(f"'fzpack' entry: unknown generator {e.get('generator')!r}")
    seed = e["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise CheckpointError(f"'fzpack' entry: seed must be an integer in [0, 2**32), got {seed!r}")
    sd = ckpt.get("state_dict")
    if e["tensors"] and not isinstance(sd, Mapping):
        raise CheckpointError("frozen tensors are declared but the checkpoint has no 'state_dict' dict")
    banks = _banks(e.get("banks") or {})
    tensors = {}
    if not isinstance(e["tensors"], Mapping):
        raise CheckpointError("'fzpack.tensors' must be a dict")
    for name, t in e["tensors"].items():
        tensors[name] = _frozen_tensor(name, t, sd, banks)
    arch = e.get("arch")
    if arch is not None and not (isinstance(arch, Mapping) and isinstance(arch.get("name"), str)):
        raise CheckpointError("'fzpack.arch' must be None or a dict with a 'name' string")
    return FrozenInfo(seed=seed, method=str(e.get("method", "custom")), tensors=tensors, banks=banks,
                      arch=arch, metadata=dict(e.get("metadata") or {}))


def _banks(b: Any) -> dict[str, int]:
    if not isinstance(b, Mapping):
        raise CheckpointError("'fzpack.banks' must be a dict of name -> length")
    for k, v in b.items():
        if not isinstance(k, str) or not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 2**48:
            raise CheckpointError(f"'fzpack.banks': bad bank {k!r} -> {v!r}")
    return dict(b)


def _frozen_tensor(name: str, t: Any, sd: Mapping, banks: Mapping[str, int]) -> FrozenTensor:
    where = f"'fzpack.tensors[{name!r}]'"
    if not isinstance(t, Mapping) or not {"init", "mask"} <= set(t) <= set(TENSOR_KEYS):
        raise CheckpointError(f"{where} must be a dict with the keys 'init' and 'mask' (and optionally 'delta')")
    if name not in sd:
        raise CheckpointError(f"{where}: no tensor of that name in 'state_dict'")
    w, mask, init = sd[name], t["mask"], t["init"]
    if not isinstance(w, torch.Tensor) or not w.is_floating_point() or w.layout != torch.strided:
        raise CheckpointError(f"{where}: the state_dict entry must be a dense floating-point tensor")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(w.shape):
        raise CheckpointError(f"{where}: 'mask' must be a bool tensor of shape {tuple(w.shape)}")
    if not isinstance(init, Mapping) or not set(init) <= set(INIT_KEYS) or "dist" not in init:
        raise CheckpointError(f"{where}: 'init' must be a dict with keys among {INIT_KEYS}")
    scheme = init.get("scheme", "")
    scale = init.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, float) or not math.isfinite(scale)
                              or float(np.float32(scale)) != scale):
        raise CheckpointError(f"{where}: init scale must be a finite float exactly representable in float32")
    try:
        spec = InitSpec.from_dict({k: v for k, v in init.items() if k not in ("scheme", "scale")})
    except Exception as ex:  # the generator raises its own error types for bad params
        raise CheckpointError(f"{where}: bad init spec: {ex}") from ex
    for key in ("p0", "p1"):
        if key in init and float(np.float32(init[key])) != init[key]:
            raise CheckpointError(f"{where}: init {key}={init[key]!r} is not exactly a float32 value")
    if spec.dist == "bank" and spec.bank not in banks:
        raise CheckpointError(f"{where}: bank {spec.bank!r} is not declared in 'fzpack.banks'")
    if not isinstance(scheme, str):
        raise CheckpointError(f"{where}: init scheme must be a string")
    delta = t.get("delta")
    if delta is not None and (not isinstance(delta, torch.Tensor) or delta.dtype != w.dtype or delta.layout != torch.strided
                              or delta.dim() != 1 or delta.numel() != int(mask.sum())):
        raise CheckpointError(f"{where}: 'delta' must be a 1-D {w.dtype} tensor with one value per trained entry")
    return FrozenTensor(spec=spec, mask=mask, scheme=scheme, scale=scale, delta=delta)

"""What a base fixes, in bytes: the value layout and the fingerprint (formats/fl-update-v1.md section 2).

* The **value layout** is the ordered list of what training changes (name, part, dtype, shape),
  built from a checkpoint's ``state_dict`` in its order: a plain tensor (bias, BatchNorm
  parameter or statistic, LC 1x1 weight, classifier, dense weight) is one entry as it is; a
  frozen tensor contributes its ``k`` trained values (FreezeNet) or offsets (DCTpS,
  ``ADDITIVE``) in mask order when ``k > 0``, and its scale (DCTpS alpha, FreezeNet-WD's decayed
  scale) when it has one. The masks, the frozen entries and the seed are fixed by the base.
* The **fingerprint** is SHA-256 over a canonical encoding of the seed, generator, method,
  family record, architecture, banks, layout and every frozen tensor's init spec and mask. It
  covers no trained value, so the same model at round 0 and at round 500 has the same
  fingerprint, and an update names the base it belongs to by it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fzpack.checkpoint import FrozenInfo
from fzpack.container.bytes_io import Writer
from fzpack.container.layout import DIST_IDS, DTYPE_IDS, GENERATOR_NONE, GENERATOR_PHILOX
from fzpack.errors import FzpackError

__all__ = ["LayoutEntry", "PART_NAMES", "PART_PLAIN", "PART_SCALE", "PART_TRAINED", "canonical_json", "fingerprint",
           "mask_digest", "state_dict_of", "value_layout"]

PART_PLAIN, PART_TRAINED, PART_SCALE = 0, 1, 2
PART_NAMES = {PART_PLAIN: "plain", PART_TRAINED: "trained", PART_SCALE: "scale"}
FINGERPRINT_DOMAIN = b"fzpack-fl-base/1"  # 16 bytes, section 2.2


@dataclass(frozen=True)
class LayoutEntry:
    """One entry of a base's value layout: what an update carries for it.

    Attributes:
        name: the checkpoint ``state_dict`` key (for ``trained`` / ``scale``: the frozen weight's key).
        part: ``PART_PLAIN`` (the whole tensor), ``PART_TRAINED`` (its k trained values or offsets,
            1-D, in mask order) or ``PART_SCALE`` (its float32 scale, shape ``()``).
        dtype: element type.
        shape: shape of the values.
    """

    name: str
    part: int
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * torch.empty((), dtype=self.dtype).element_size()

    @property
    def label(self) -> str:
        """``fc.bias`` for a plain entry, ``fc.weight[trained]`` / ``fc.weight[scale]`` otherwise."""
        return self.name if self.part == PART_PLAIN else f"{self.name}[{PART_NAMES[self.part]}]"


def state_dict_of(ckpt: Any) -> Mapping[str, torch.Tensor]:
    """The state dict a base is made of: ``ckpt["state_dict"]``, or ``ckpt`` itself when it is one."""
    sd = ckpt.get("state_dict") if isinstance(ckpt, Mapping) and "state_dict" in ckpt else ckpt
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise FzpackError("a base needs a checkpoint whose state dict maps names to tensors")
    for k, v in sd.items():
        if v.dtype not in DTYPE_IDS or v.layout != torch.strided:
            raise FzpackError(f"state dict entry {k!r} ({v.dtype}, {v.layout}) cannot travel in an update")
    return sd


def value_layout(sd: Mapping[str, torch.Tensor], info: FrozenInfo | None) -> list[LayoutEntry]:
    """The layout of section 2.1 for a state dict and its validated ``fzpack`` entry (None: all plain)."""
    frozen = info.tensors if info else {}
    out = []
    for name, t in sd.items():
        ft = frozen.get(name)
        if ft is None:
            out.append(LayoutEntry(name, PART_PLAIN, t.dtype, tuple(t.shape)))
            continue
        k = int(ft.mask.sum())
        if k:
            out.append(LayoutEntry(name, PART_TRAINED, t.dtype, (k,)))
        if ft.scale is not None:
            out.append(LayoutEntry(name, PART_SCALE, torch.float32, ()))
    return out


def canonical_json(obj: Any) -> str:
    """The canonical JSON text the fingerprint hashes (section 2.2): sorted keys, no spaces, ASCII."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise FzpackError(f"cannot fingerprint {obj!r}: not plain JSON ({e})") from e


def mask_digest(mask: torch.Tensor) -> bytes:
    """SHA-256 of a mask's bits in C order, 8 per byte, least significant bit first (section 2.2)."""
    bits = np.packbits(mask.detach().to("cpu").reshape(-1).numpy().astype(np.uint8), bitorder="little")
    return hashlib.sha256(bits.tobytes()).digest()


def _family_record(info: FrozenInfo) -> dict[str, Any]:
    from fzpack.families import get_family, list_methods

    if info.method not in list_methods():
        return {}
    keys = get_family(info.method).record_keys
    return {k: info.metadata[k] for k in keys if k in info.metadata}


def fingerprint(sd: Mapping[str, torch.Tensor], info: FrozenInfo | None, layout: list[LayoutEntry]) -> bytes:
    """SHA-256 of the canonical encoding of formats/fl-update-v1.md section 2.2."""
    w = Writer()
    w.raw(FINGERPRINT_DOMAIN)
    w.u8(GENERATOR_PHILOX if info else GENERATOR_NONE)
    w.u32(info.seed if info else 0)
    w.string(info.method if info else "")
    w.string(canonical_json(info.arch) if info and info.arch is not None else "")
    w.string(canonical_json(_family_record(info) if info else {}))
    banks = list(info.banks.items()) if info else []
    w.varint(len(banks))
    for bank, length in banks:
        w.string(bank)
        w.varint(length)
    w.varint(len(layout))
    for e in layout:
        _write_tensor_head(w, e.name, e.dtype, e.shape)
        w.u8(e.part)
    frozen = [n for n in sd if info and n in info.tensors]
    w.varint(len(frozen))
    for name in frozen:
        ft, t = info.tensors[name], sd[name]  # type: ignore[union-attr]
        _write_tensor_head(w, name, t.dtype, tuple(t.shape))
        w.u8(DIST_IDS[ft.spec.dist])
        w.f32(ft.spec.p0)
        w.f32(ft.spec.p1)
        w.string(ft.spec.bank)
        w.varint(ft.spec.offset)
        w.string(ft.scheme)
        w.u8((1 if ft.scale is not None else 0) | (2 if ft.delta is not None else 0))
        w.varint(int(ft.mask.sum()))
        w.raw(mask_digest(ft.mask))
    return hashlib.sha256(w.getvalue()).digest()


def _write_tensor_head(w: Writer, name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    w.string(name)
    w.u8(DTYPE_IDS[dtype])
    w.u8(len(shape))
    for d in shape:
        w.varint(d)

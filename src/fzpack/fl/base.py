"""What a federated run shares once: the base (formats/fl-update-v1.md section 2).

A base is a `.fzp` file of the model at round 0 - seed, generator, architecture, family record,
init specs, masks / seeded supports / banks - plus what is derived from it alone: the value
layout (the order every update uses) and the fingerprint that names it (layout.py). Only the
``state_dict`` takes part: other checkpoint entries (optimizer state, metrics) travel with the
base's bytes but are neither in the layout nor in the fingerprint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fzpack.checkpoint import FrozenInfo, FrozenTensor, frozen_info
from fzpack.errors import FzpackError
from fzpack.fl.layout import PART_PLAIN, PART_SCALE, PART_TRAINED, LayoutEntry, fingerprint, state_dict_of, value_layout
from fzpack.unpack import DEFAULT_MAX_BYTES

__all__ = ["Base"]


class Base:
    """The shared, fixed part of a federated frozen-weight model; updates carry only its values.

    Build one with :meth:`from_model` (a model after ``fzpack.freeze_`` or
    ``fzpack.load_into(..., trainable=True)``) or :meth:`from_fzp` / :meth:`from_bytes` (the
    bytes a server sent once: a `.fzp` file). ``to_bytes()`` gives those bytes.

    Attributes:
        layout: the value layout (section 2.1), in the order every update uses.
        fingerprint: 32-byte SHA-256 naming this base (section 2.2); ``fingerprint.hex()`` prints it.

    Example:
        >>> base = Base.from_model(model)                 # server, round 0
        >>> blob = base.to_bytes()                        # send once
        >>> base = Base.from_bytes(blob)                  # client
        >>> [e.label for e in base.layout][:2]
        ['conv1.weight[trained]', 'conv1.bias']
    """

    def __init__(self, ckpt: Any, data: bytes | None = None) -> None:
        """Prefer the ``from_*`` constructors; ``ckpt`` is a checkpoint object (not copied)."""
        self._ckpt = ckpt
        self._sd = state_dict_of(ckpt)
        self._info = frozen_info(ckpt)
        self._data = data
        self.layout: list[LayoutEntry] = value_layout(self._sd, self._info)
        self.fingerprint: bytes = fingerprint(self._sd, self._info, self.layout)

    # -- constructors -----------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: nn.Module, *, arch: dict[str, Any] | None = None,
                   metadata: dict[str, Any] | None = None) -> Base:
        """The base of a model in its training form (its current values become the base's values).

        Args:
            model: after ``fzpack.freeze_`` (or ``load_into(..., trainable=True)``); a plain
                module gives a base whose layout is its whole state dict.
            arch: ``{"name": registry name, "config": {...}}`` so ``fzpack.load_model`` can
                rebuild the module from the base (part of the fingerprint).
            metadata: free-form primitives stored with the base (not fingerprinted).

        Returns:
            The base.

        Example:
            >>> base = Base.from_model(fzpack.freeze_(Net(), fzpack.DCTpSConfig(density=0.01)))
        """
        from fzpack.freeze import checkpoint_of

        return cls(checkpoint_of(model, arch=arch, metadata=metadata))

    @classmethod
    def from_fzp(cls, src: str | os.PathLike | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Base:
        """The base a `.fzp` file (path or bytes) describes; its values are the file's.

        Example:
            >>> base = Base.from_fzp("round0.fzp")
        """
        from fzpack.unpack import unpack

        data = bytes(src) if isinstance(src, (bytes, bytearray, memoryview)) else _read(src)
        return cls(unpack(data, max_bytes=max_bytes).obj, data)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Base:
        """Inverse of :meth:`to_bytes` (the same as :meth:`from_fzp` on bytes)."""
        return cls.from_fzp(bytes(data), max_bytes=max_bytes)

    @classmethod
    def from_checkpoint(cls, ckpt: Any) -> Base:
        """The base of a checkpoint object (``fzpack.restore`` / ``checkpoint_of`` output)."""
        return cls(ckpt)

    def to_bytes(self) -> bytes:
        """The base as a lossless `.fzp` file: what a server sends a client once."""
        if self._data is None:
            from fzpack.pack import pack

            self._data = pack(self._ckpt).data
        return self._data

    # -- what it holds ----------------------------------------------------------------------------
    @property
    def checkpoint(self) -> Any:
        """The checkpoint object of the base (do not modify it)."""
        return self._ckpt

    @property
    def info(self) -> FrozenInfo | None:
        """The validated ``fzpack`` entry (seed, method, frozen tensors, banks, arch), or None."""
        return self._info

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def trained_count(self) -> int:
        """Number of values an update carries (Σ numel over the layout)."""
        return sum(e.numel for e in self.layout)

    def __repr__(self) -> str:
        method = self._info.method if self._info else "plain"
        return f"Base({method}, {len(self.layout)} entries, {self.trained_count:,} values, {self.fingerprint.hex()[:12]})"

    # -- values -----------------------------------------------------------------------------------
    def values(self) -> list[torch.Tensor]:
        """The base's own values in layout order (CPU copies): the round-0 global model."""
        out = []
        for e in self.layout:
            t = self._sd[e.name]
            if e.part == PART_PLAIN:
                v = t
            elif e.part == PART_SCALE:
                v = torch.tensor(self._info.tensors[e.name].scale, dtype=torch.float32)  # type: ignore[union-attr]
            else:
                ft = self._info.tensors[e.name]  # type: ignore[union-attr]
                v = ft.delta if ft.delta is not None else t.reshape(-1)[ft.mask.to(t.device).reshape(-1)]
            out.append(v.detach().to("cpu", copy=True).reshape(e.shape))
        return out

    def check_values(self, values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``values`` checked against the layout (count, dtype, shape); returns them as a list.

        Raises:
            FzpackError: naming the first entry that does not fit.
        """
        values = list(values)
        if len(values) != len(self.layout):
            raise FzpackError(f"{len(values)} values given, the base's layout has {len(self.layout)} entries")
        for e, v in zip(self.layout, values):
            if not isinstance(v, torch.Tensor) or v.dtype != e.dtype or tuple(v.shape) != e.shape:
                got = f"{v.dtype} {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
                raise FzpackError(f"value for {e.label} should be {e.dtype} {e.shape}, got {got}")
        return values

    def values_of(self, model: nn.Module) -> list[torch.Tensor]:
        """A training-form model's current values in layout order (detached CPU copies).

        Example:
            >>> vals = base.values_of(model)       # what encode_update(model, base) sends
        """
        return [t.detach().to("cpu", copy=True) for t in self._bind(model)]

    @torch.no_grad()
    def write_into(self, model: nn.Module, values: Sequence[torch.Tensor]) -> nn.Module:
        """Copy ``values`` into a training-form model in place (parameters keep their identity)."""
        for ref, v in zip(self._bind(model), self.check_values(values)):
            ref.copy_(v.to(ref.device))
        return model

    def checkpoint_with(self, values: Sequence[torch.Tensor]) -> dict[str, Any]:
        """The base's checkpoint with ``values`` in place of its own (a new dict; the base is unchanged).

        Frozen tensors touched by the layout are rebuilt exactly as the training form computes
        them (``FrozenWeight``: regenerated frozen part, times the new scale, trained values or
        offsets at the mask), so the result restores the model the values describe bit for bit.
        """
        from fzpack.layers.frozen import FrozenWeight

        values = self.check_values(values)
        flat = "state_dict" not in self._ckpt  # a bare state dict: give one back
        ckpt = {} if flat else dict(self._ckpt)
        sd = dict(self._sd)
        ckpt["state_dict"] = sd
        by_name: dict[str, dict[int, torch.Tensor]] = {}
        for e, v in zip(self.layout, values):
            if e.part == PART_PLAIN:
                sd[e.name] = v.detach().to(self._sd[e.name].device, copy=True).reshape(e.shape)
            else:
                by_name.setdefault(e.name, {})[e.part] = v
        if by_name:
            info = self._info
            assert info is not None
            entry = dict(ckpt["fzpack"])
            tensors = dict(entry["tensors"])
            for name, parts in by_name.items():
                ft, w = info.tensors[name], self._sd[name]
                scale = float(parts[PART_SCALE]) if PART_SCALE in parts else ft.scale
                trained = parts.get(PART_TRAINED, torch.empty(0, dtype=w.dtype)).detach().to(w.device)
                new = FrozenTensor(ft.spec, ft.mask, ft.scheme, scale=scale, delta=trained if ft.delta is not None else None)
                fw = FrozenWeight(new, info.seed, name, w, banks=info.banks, additive=ft.delta is not None)
                if ft.delta is None:
                    fw.trained.data.copy_(trained)
                sd[name] = fw.dense().to(w.device)
                tensors[name] = new.entry()
            entry["tensors"] = tensors
            ckpt["fzpack"] = entry
        return sd if flat else ckpt

    def _bind(self, model: nn.Module) -> list[torch.Tensor]:
        """The model's live tensor for every layout entry, after checking the model is this base's."""
        from fzpack.freeze import _unwrap
        from fzpack.layers import frozen_weights

        model = _unwrap(model)
        fws = frozen_weights(model)
        frozen = self._info.tensors if self._info else {}
        if set(fws) != set(frozen):
            hint = ("; build it with fzpack.load_into(module, base.to_bytes(), trainable=True)" if not fws else "")
            raise FzpackError(f"the model's frozen weights {sorted(fws)} are not the base's {sorted(frozen)}{hint}")
        for name, fw in fws.items():
            ft, w = frozen[name], self._sd[name]
            if tuple(fw.shape) != tuple(w.shape) or fw.dtype != w.dtype:
                raise FzpackError(f"{name}: the model's weight is {fw.dtype} {fw.shape}, the base's {w.dtype} {tuple(w.shape)}")
            index = torch.nonzero(ft.mask.reshape(-1)).reshape(-1)
            if not torch.equal(fw.index.detach().cpu(), index):
                raise FzpackError(f"{name}: the model's trained entries are not the base's mask (another seed or mask?)")
            if fw.additive != (ft.delta is not None) or fw.scaled != (ft.scale is not None):
                raise FzpackError(f"{name}: the model's layer (additive={fw.additive}, scaled={fw.scaled}) "
                                  "is not the base's family form")
        sd = model.state_dict(keep_vars=True)
        inner = tuple(n[: -len("weight")] + "frozen_weight." for n in fws)
        plain = {k for k in sd if not k.startswith(inner)} if inner else set(sd)
        want = {e.name for e in self.layout if e.part == PART_PLAIN}
        if plain != want:
            extra, missing = sorted(plain - want), sorted(want - plain)
            raise FzpackError(f"the model's state dict does not fit the base: extra {extra[:5]}, missing {missing[:5]}")
        refs = []
        for e in self.layout:
            if e.part == PART_PLAIN:
                ref = sd[e.name]
            elif e.part == PART_TRAINED:
                ref = fws[e.name].trained
            else:
                ref = fws[e.name].scale
            if ref.dtype != e.dtype or tuple(ref.shape) != e.shape:
                raise FzpackError(f"{e.label}: the model holds {ref.dtype} {tuple(ref.shape)}, the base {e.dtype} {e.shape}")
            refs.append(ref)
        return refs


def _read(src: str | os.PathLike) -> bytes:
    path = Path(src)
    if not path.is_file():
        raise FzpackError(f"no such file: {path}")
    return path.read_bytes()

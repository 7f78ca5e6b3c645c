"""InitSpec: which distribution a frozen tensor is drawn from, with float32-exact parameters."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from fzpack.errors import CheckpointError, FzpackError

DISTS = ("normal", "uniform", "pm", "zeros", "bank", "dct")

_FIELDS = ("dist", "p0", "p1", "bank", "offset")


def _as_f32(value: Any, what: str) -> float:
    """`value` rounded to the nearest float32, returned as the (exact) Python float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise FzpackError(f"{what} must be a real number, got {value!r}")
    if not math.isfinite(float(value)):
        raise FzpackError(f"{what} must be finite, got {value!r}")
    with np.errstate(over="ignore"):
        rounded = np.float32(value)
    if not np.isfinite(rounded):
        raise FzpackError(f"{what} = {value!r} overflows float32")
    return float(rounded)


@dataclass(frozen=True)
class InitSpec:
    """How the frozen values of one tensor are regenerated (formats/generator-v1.md, section 6).

    Args:
        dist: "normal" (p0 = mean, p1 = std), "uniform" (p0 = low, p1 = high),
            "pm" (p0 = sigma), "zeros", "bank" (p0 = scale, draws from bank `bank` at `offset`), or
            "dct" (no parameters: the orthonormal DCT-II matrix of the weight's shape, spec 6.7).
        p0, p1: parameters, rounded to float32 on construction (the stored values are exact float32).
        bank: bank name, only for dist "bank".
        offset: start index into the bank, only for dist "bank".

    Example:
        >>> InitSpec("normal", 0.0, 0.1).p1 == float(np.float32(0.1))
        True
    """

    dist: str
    p0: float = 0.0
    p1: float = 0.0
    bank: str = ""
    offset: int = 0

    def __post_init__(self) -> None:
        if self.dist not in DISTS:
            raise FzpackError(f"unknown distribution {self.dist!r}; expected one of {', '.join(DISTS)}")
        p0 = _as_f32(self.p0, f"{self.dist} parameter p0")
        p1 = _as_f32(self.p1, f"{self.dist} parameter p1")
        object.__setattr__(self, "p0", p0)
        object.__setattr__(self, "p1", p1)
        if isinstance(self.offset, bool):
            raise FzpackError(f"bank offset must be a non-negative integer, got {self.offset!r}")
        try:
            offset = operator.index(self.offset)
        except TypeError:
            raise FzpackError(f"bank offset must be a non-negative integer, got {self.offset!r}") from None
        object.__setattr__(self, "offset", offset)
        if not isinstance(self.bank, str):
            raise FzpackError(f"bank name must be a str, got {type(self.bank).__name__}")
        self._check_params()

    def _check_params(self) -> None:
        d, p0, p1 = self.dist, self.p0, self.p1
        if d == "bank":
            if not self.bank:
                raise FzpackError("dist 'bank' needs a non-empty bank name")
            if self.offset < 0:
                raise FzpackError(f"bank offset must be non-negative, got {self.offset}")
        elif self.bank or self.offset:
            raise FzpackError(f"bank and offset are only meaningful for dist 'bank', not {d!r}")
        if d == "normal" and p1 < 0:
            raise FzpackError(f"normal std must be >= 0, got {p1}")
        if d == "uniform":
            if p0 > p1:
                raise FzpackError(f"uniform needs low <= high, got low={p0}, high={p1}")
            with np.errstate(over="ignore"):
                width = np.float32(p1) - np.float32(p0)
            if not np.isfinite(width):
                raise FzpackError(f"uniform width high - low overflows float32 (low={p0}, high={p1})")
        if d == "pm" and p0 < 0:
            raise FzpackError(f"pm sigma must be >= 0, got {p0}")
        if d in ("pm", "bank") and p1 != 0.0:
            raise FzpackError(f"dist {d!r} takes one parameter; p1 must be 0, got {p1}")
        if d in ("zeros", "dct") and (p0 != 0.0 or p1 != 0.0):
            raise FzpackError(f"dist {d!r} takes no parameters, got p0={p0}, p1={p1}")

    def to_dict(self) -> dict[str, str | int | float]:
        """Plain dict of str/int/float (safe for torch.load(weights_only=True)).

        Returns:
            {"dist": str, "p0": float, "p1": float, "bank": str, "offset": int}

        Example:
            >>> InitSpec.from_dict(InitSpec("pm", 0.5).to_dict()) == InitSpec("pm", 0.5)
            True
        """
        return {"dist": self.dist, "p0": self.p0, "p1": self.p1, "bank": self.bank, "offset": self.offset}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InitSpec:
        """Rebuild an InitSpec from `to_dict()` output; raises CheckpointError if it is malformed.

        Args:
            data: mapping with keys dist, p0, p1, bank, offset (bank and offset optional).

        Returns:
            The InitSpec.

        Example:
            >>> InitSpec.from_dict({"dist": "zeros", "p0": 0.0, "p1": 0.0}).dist
            'zeros'
        """
        if not isinstance(data, Mapping):
            raise CheckpointError(f"init spec must be a dict, got {type(data).__name__}")
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise CheckpointError(f"init spec has unknown keys {sorted(map(str, unknown))}")
        if "dist" not in data or not isinstance(data["dist"], str):
            raise CheckpointError("init spec needs a str 'dist'")
        for key in ("p0", "p1"):
            if key in data and (isinstance(data[key], bool) or not isinstance(data[key], (int, float))):
                raise CheckpointError(f"init spec field {key!r} must be a number, got {data[key]!r}")
        if "offset" in data and (isinstance(data["offset"], bool) or not isinstance(data["offset"], int)):
            raise CheckpointError(f"init spec field 'offset' must be an int, got {data['offset']!r}")
        kwargs = {k: data[k] for k in _FIELDS if k in data}
        try:
            spec = cls(**kwargs)
        except FzpackError as exc:
            raise CheckpointError(f"invalid init spec: {exc}") from None
        for key in ("p0", "p1"):
            if key in data and float(data[key]) != getattr(spec, key):
                raise CheckpointError(f"init spec field {key!r} = {data[key]!r} is not an exact float32")
        return spec

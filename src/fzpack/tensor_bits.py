"""Exact byte views of tensors of every dtype fzpack stores (little-endian on the wire)."""

from __future__ import annotations

import sys

import numpy as np
import torch

_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_NP_INT_OF_SIZE = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}


def bits_view(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bits as a same-shape integer tensor (compares NaN payloads and -0.0 exactly)."""
    if t.dtype == torch.bool:
        return t.view(torch.uint8)
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.view(_INT_OF_SIZE[t.element_size()])


def byte_view(t: torch.Tensor) -> np.ndarray:
    """The tensor's little-endian element bytes as a uint8 array, C order: a view when ``t`` is a
    contiguous CPU tensor on a little-endian machine (no copy), else a copy."""
    t = t.detach()
    if t.device.type != "cpu" or not t.is_contiguous() or sys.byteorder != "little":
        return np.frombuffer(to_numpy_bytes(t), np.uint8)
    if t.numel() == 0:
        return np.zeros(0, np.uint8)
    return bits_view(t).reshape(-1).numpy().view(np.uint8)


def to_numpy_bytes(t: torch.Tensor) -> bytes:
    """Little-endian element bytes of a tensor, in C order."""
    t = t.detach().to("cpu").contiguous()
    if t.numel() == 0:
        return b""
    arr = bits_view(t).numpy()
    if sys.byteorder == "big" and arr.dtype.itemsize > 1:
        arr = arr.byteswap()
    return arr.tobytes()


def from_bytes(data: bytes | memoryview, dtype: torch.dtype, shape: tuple[int, ...], copy: bool = True) -> torch.Tensor:
    """Inverse of :func:`to_numpy_bytes`: a new CPU tensor owning its memory.

    ``copy=False`` lets the tensor adopt ``data`` itself when that is possible (a writable,
    aligned buffer on a little-endian machine): the caller hands the buffer over.
    """
    size = torch.empty((), dtype=dtype).element_size()
    if not len(data):
        return torch.empty(shape, dtype=dtype)
    # complex numbers travel as (real, imaginary) pairs: read them as integers of the component size
    np_int = _NP_INT_OF_SIZE[size // 2 if dtype.is_complex else size]
    arr = np.frombuffer(data, dtype=np.dtype(np_int).newbyteorder("<"))
    if copy or sys.byteorder != "little" or not arr.flags.writeable or not arr.flags.aligned:
        arr = arr.astype(np_int, copy=True)
    raw = torch.from_numpy(arr)
    if dtype == torch.bool:
        return raw.view(torch.bool).reshape(shape)
    if dtype in (torch.complex64, torch.complex128):
        real = raw.view(torch.float32 if dtype == torch.complex64 else torch.float64).reshape(*shape, 2)
        return torch.view_as_complex(real)
    return raw.view(dtype).reshape(shape)

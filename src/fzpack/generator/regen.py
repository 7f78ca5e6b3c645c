"""Regenerate a tensor (or any slice of it) from (InitSpec, seed, name): the public entry points.

Element i of a flattened tensor depends only on (spec, seed, name, i), never on the tensor's
length or on which slice is asked for (dist "dct" is the exception: it reads no stream and its
values depend on the tensor's shape instead, see dct.py): 8 consecutive elements come from one Philox block (uniform
and pm use one 32-bit word each, normal one 64-bit word per pair), so a slice starts at block
start // 8. The CPU path cuts the block range into cache-sized chunks (optionally spread over
threads); each chunk restarts Philox at its own first block, which is exact because blocks are
independent.
"""

from __future__ import annotations

import math
import operator
import os
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from fzpack.errors import FzpackError
from fzpack.thread_pool import SharedPool
from fzpack.generator import compiled
from fzpack.generator import kernels_numpy as kn
from fzpack.generator.constants import BANK, INIT
from fzpack.generator.dct import dct_constants, dct_layout, dct_numpy, dct_torch
from fzpack.generator.philox import philox_numpy, stream_key
from fzpack.generator.schemes import check_shape
from fzpack.generator.spec import InitSpec

#: Elements produced per Philox block (4 x 64 bits = 8 x 32-bit words = 4 normal pairs).
ELEMS_PER_BLOCK = 8
#: Blocks per CPU chunk: 32 K elements (16 K normal pairs), whose scratch buffers (0.6 MB) stay in L2.
CHUNK_BLOCKS = 4096
#: Blocks per torch-path chunk: bounds the int64 temporaries (~150 MB at 1 M elements).
TORCH_CHUNK_BLOCKS = 1 << 17
#: Largest element index + 1 accepted (block indices stay far below int64 range).
MAX_ELEMENTS = 1 << 62

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _default_threads() -> int | None:
    # Unset: one thread for the numpy kernels (on the 2-vCPU machine this was tuned on, the vCPUs
    # share one core's vector units, and a second thread made them slower: GIL hand-offs around
    # ~60 short ufunc calls per chunk), min(4, CPUs) for the compiled kernels (which hold no GIL).
    # The output never depends on the thread count.
    value = os.environ.get("FZPACK_GENERATOR_THREADS")
    if value is None:
        return None
    try:
        return max(1, min(int(value), 64))
    except ValueError:
        return 1


_threads_set = _default_threads()
_pool = SharedPool("fzpack-gen")
#: A compiled range is split over threads only in pieces of at least this many elements.
PIECE_MIN = 1 << 17


def set_num_threads(n: int | None) -> None:
    """Set the number of CPU threads regenerating one large tensor.

    Args:
        n: a positive thread count, or None for the default ($FZPACK_GENERATOR_THREADS, else 1
            with the numpy kernels and min(4, CPUs) with the compiled ones). The output never
            depends on it.

    Example:
        >>> set_num_threads(2); get_num_threads()
        2
        >>> set_num_threads(None)
    """
    global _threads_set
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise FzpackError(f"thread count must be a positive integer, got {n!r}")
    _threads_set = None if n is None else min(n, 64)


def get_num_threads() -> int:
    """Current number of CPU generator threads (see set_num_threads)."""
    if _threads_set is not None:
        return _threads_set
    return max(1, min(4, os.cpu_count() or 1)) if compiled.active() == "compiled" else 1


NumpyKernel = Callable[[np.ndarray, np.ndarray], None]


def _check_range(start: Any, count: Any) -> tuple[int, int]:
    try:
        s, c = operator.index(start), operator.index(count)
    except TypeError:
        raise FzpackError("start and count must be integers") from None
    if s < 0 or c < 0 or s + c > MAX_ELEMENTS:
        raise FzpackError(f"element range [{s}, {s + c}) is outside [0, 2**62)")
    return s, c


def _check_shape(shape: Sequence[int] | torch.Size | int) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    dims = check_shape(shape)  # type: ignore[arg-type]
    if math.prod(dims) > MAX_ELEMENTS:
        raise FzpackError(f"shape {dims} has too many elements")
    return dims


def _check_spec(spec: Any) -> InitSpec:
    if not isinstance(spec, InitSpec):
        raise FzpackError(f"spec must be an InitSpec, got {type(spec).__name__}")
    return spec


def _bank_length(spec: InitSpec, banks: Mapping[str, int] | None) -> int:
    if banks is None or spec.bank not in banks:
        raise FzpackError(f"bank {spec.bank!r} has no length: pass banks={{{spec.bank!r}: length}}")
    length = banks[spec.bank]
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise FzpackError(f"bank {spec.bank!r} length must be a positive integer, got {length!r}")
    return int(length)


def _numpy_kernel(spec: InitSpec) -> NumpyKernel:
    if spec.dist == "normal":
        return partial(kn.normal, mean=spec.p0, std=spec.p1)
    if spec.dist == "uniform":
        return partial(kn.uniform, low=spec.p0, high=spec.p1)
    if spec.dist == "pm":
        return partial(kn.pm, sigma=spec.p0)
    raise AssertionError(spec.dist)  # zeros and bank never reach a kernel


def _fill_numpy(kernel: NumpyKernel, key: tuple[int, int], start: int, count: int, out: np.ndarray) -> None:
    """out[j] = element start + j of the stream, j < count; chunked and threaded."""
    if count == 0:
        return
    end = start + count
    b0, b1 = start // ELEMS_PER_BLOCK, -(-end // ELEMS_PER_BLOCK)
    chunks = [(b, min(b + CHUNK_BLOCKS, b1)) for b in range(b0, b1, CHUNK_BLOCKS)]

    def run(group: Sequence[tuple[int, int]]) -> None:
        for b, e in group:
            raw = philox_numpy(key, b, e - b)
            lo, hi = b * ELEMS_PER_BLOCK, e * ELEMS_PER_BLOCK
            if lo >= start and hi <= end:
                kernel(raw, out[lo - start : hi - start])
            else:  # partial block at either end of the range
                tmp = np.empty(hi - lo, dtype=np.float32)
                kernel(raw, tmp)
                s, t = max(lo, start), min(hi, end)
                out[s - start : t - start] = tmp[s - lo : t - lo]

    n_groups = min(get_num_threads(), len(chunks))
    if n_groups <= 1:
        run(chunks)
        return
    # interleaved groups balance the load; one task per thread keeps executor overhead negligible
    pool = _pool.get(get_num_threads())
    futures = [pool.submit(run, chunks[g::n_groups]) for g in range(n_groups)]
    for fut in futures:
        fut.result()


def split_range(start: int, count: int, align: int) -> list[tuple[int, int]]:
    """[start, start + count) cut into one piece per generator thread (at most one per PIECE_MIN
    elements), cut at absolute multiples of `align` so that no Philox block is split."""
    n = max(1, min(get_num_threads(), count // PIECE_MIN))
    cuts = [start] + [(start + count * i // n) // align * align for i in range(1, n)] + [start + count]
    return [(a, b - a) for a, b in zip(cuts, cuts[1:]) if b > a]


def run_split(pieces: list[tuple[int, int]], start: int, out: np.ndarray, work: Callable[[int, int, np.ndarray], None]) -> None:
    """work(piece_start, piece_count, out_slice) for every piece, on the generator threads."""
    if len(pieces) == 1:
        work(pieces[0][0], pieces[0][1], out)
        return
    pool = _pool.get(get_num_threads())
    futures = [pool.submit(work, a, n, out[a - start : a - start + n]) for a, n in pieces]
    for fut in futures:
        fut.result()


def _fill(spec: InitSpec, key: tuple[int, int], start: int, count: int, out: np.ndarray) -> None:
    """out[j] = element start + j of a normal / uniform / pm stream: compiled kernel or numpy."""
    kc = compiled.compiled_for(count)
    if kc is None:
        _fill_numpy(_numpy_kernel(spec), key, start, count, out)
        return
    folded = False
    if spec.dist == "normal":
        code, p0, p1 = 0, spec.p0, spec.p1
    elif spec.dist == "uniform":
        code, (p0, p1, folded) = 1, kn.uniform_factor(spec.p0, spec.p1)
    else:
        code, p0, p1 = 2, spec.p0, 0.0
    k0, k1, a, b = np.uint64(key[0]), np.uint64(key[1]), np.float32(p0), np.float32(p1)

    def work(s: int, n: int, dst: np.ndarray) -> None:
        kc.fill(code, k0, k1, s, n, a, b, folded, dst)

    run_split(split_range(start, count, ELEMS_PER_BLOCK), start, out, work)


def _dct(dims: tuple[int, ...], start: int, count: int) -> np.ndarray:
    """Elements [start, start + count) of a dct tensor: compiled kernel or numpy (same bits)."""
    kc = compiled.compiled_for(count)
    if kc is None:
        return dct_numpy(dims, start, count)
    lay = dct_layout(dims)
    if start + count > lay.numel:
        return dct_numpy(dims, start, count)  # raises the range error
    cn, sk0, sk1 = dct_constants(lay.n)
    out = np.empty(count, dtype=np.float32)

    def work(s: int, n: int, dst: np.ndarray) -> None:
        kc.dct_fill(s, n, lay.patch, lay.spatial, lay.c_in, lay.n, cn, sk0, sk1, dst)

    run_split(split_range(start, count, 1), start, out, work)
    return out


def _cyclic(fill: Callable[[int, int, Any], None], length: int, first: int, count: int, out: Any) -> None:
    """out[j] = seq[(first + j) mod length], where fill(a, n, dst) writes seq[a : a + n] to dst."""
    head = min(count, length - first)
    fill(first, head, out[:head])
    if count == head:
        return
    body = min(count - head, length)
    fill(0, body, out[head : head + body])
    done = head + body  # out[head:done] is a whole number of periods from index 0: double it
    while done < count:
        n = min(done - head, count - done)
        out[done : done + n] = out[head : head + n]
        done += n


def _check_slice_shape(spec: InitSpec, shape: Sequence[int] | torch.Size | None, start: int, count: int) -> None:
    """A given shape must contain the slice; dist "dct" cannot do without one."""
    if shape is None:
        if spec.dist == "dct":
            raise FzpackError("dist 'dct' depends on the tensor's shape: pass shape=")
        return
    numel = math.prod(_check_shape(shape))
    if start + count > numel:
        raise FzpackError(f"element range [{start}, {start + count}) is outside shape {tuple(shape)}")


def generate_numpy(
    spec: InitSpec,
    seed: int,
    name: str,
    start: int,
    count: int,
    banks: Mapping[str, int] | None = None,
    *,
    shape: Sequence[int] | torch.Size | None = None,
) -> np.ndarray:
    """Elements [start, start + count) of the flattened tensor `name`, on the CPU.

    Args:
        spec: the tensor's InitSpec.
        seed: user seed in [0, 2**32).
        name: the tensor's state_dict key (names its INIT stream).
        start: first element index of the slice.
        count: number of elements.
        banks: bank name -> bank length, needed for dist "bank".
        shape: the full tensor's shape; required for dist "dct" (whose values depend on it),
            optional otherwise (then only checked to contain the slice).

    Returns:
        float32 array of length `count`, equal to the same slice of the full tensor.

    Example:
        >>> spec = InitSpec("normal", 0.0, 0.05)
        >>> full = generate_numpy(spec, 7, "fc.weight", 0, 100)
        >>> bool((generate_numpy(spec, 7, "fc.weight", 33, 10) == full[33:43]).all())
        True
        >>> generate_numpy(InitSpec("dct"), 0, "fc.weight", 0, 2, shape=(4, 4)).tolist()
        [0.5, 0.5]
    """
    spec = _check_spec(spec)
    start, count = _check_range(start, count)
    _check_slice_shape(spec, shape, start, count)
    key = stream_key(seed, INIT, name)
    if spec.dist == "dct":  # no stream: seed and name are only validated
        return _dct(_check_shape(shape), start, count)  # type: ignore[arg-type]
    try:
        out = np.empty(count, dtype=np.float32)
    except (ValueError, MemoryError):
        raise FzpackError(f"cannot allocate {count} float32 values") from None
    if spec.dist == "zeros":
        out.fill(0.0)
    elif spec.dist == "bank":
        length = _bank_length(spec, banks)
        bank_key = stream_key(seed, BANK, spec.bank)
        bank_spec = InitSpec("uniform", -1.0, 1.0)
        if count:
            first = (spec.offset + start) % length
            _cyclic(lambda a, n, dst: _fill(bank_spec, bank_key, a, n, dst), length, first, count, out)
            np.multiply(out, np.float32(spec.p0), out=out)
    else:
        _fill(spec, key, start, count, out)
    return out


def _torch_range(
    spec: InitSpec, key: tuple[int, int], start: int, count: int, device: torch.device
) -> torch.Tensor:
    """Elements [start, start + count) of a normal/uniform/pm stream with the torch kernels."""
    from fzpack.generator import kernels_torch as kt
    from fzpack.generator.torch_philox import philox_torch

    if spec.dist == "normal":
        kernel = partial(kt.normal, mean=spec.p0, std=spec.p1)
    elif spec.dist == "uniform":
        kernel = partial(kt.uniform, low=spec.p0, high=spec.p1)
    else:
        kernel = partial(kt.pm, sigma=spec.p0)
    if count == 0:
        return torch.empty(0, dtype=torch.float32, device=device)
    b0, b1 = start // ELEMS_PER_BLOCK, -(-(start + count) // ELEMS_PER_BLOCK)
    parts = [
        kernel(philox_torch(key, b, min(b + TORCH_CHUNK_BLOCKS, b1) - b, device=device))
        for b in range(b0, b1, TORCH_CHUNK_BLOCKS)
    ]
    values = parts[0] if len(parts) == 1 else torch.cat(parts)
    skip = start - b0 * ELEMS_PER_BLOCK
    return values[skip : skip + count]


def _generate_torch(
    spec: InitSpec,
    seed: int,
    name: str,
    count: int,
    device: torch.device,
    banks: Mapping[str, int] | None,
    shape: Sequence[int] | None = None,
) -> torch.Tensor:
    if spec.dist in ("zeros", "dct"):
        stream_key(seed, INIT, name)  # same argument checks as every other dist
        if spec.dist == "dct":
            _check_slice_shape(spec, shape, 0, count)
            return dct_torch(_check_shape(shape), 0, count, device)  # type: ignore[arg-type]
        return torch.zeros(count, dtype=torch.float32, device=device)
    if spec.dist != "bank":
        return _torch_range(spec, stream_key(seed, INIT, name), 0, count, device)
    stream_key(seed, INIT, name)
    length = _bank_length(spec, banks)
    bank_spec = InitSpec("uniform", -1.0, 1.0)
    bank_key = stream_key(seed, BANK, spec.bank)
    out = torch.empty(count, dtype=torch.float32, device=device)

    def fill(a: int, n: int, dst: torch.Tensor) -> None:
        dst.copy_(_torch_range(bank_spec, bank_key, a, n, device))

    if count:
        _cyclic(fill, length, spec.offset % length, count, out)
    return out * spec.p0


def resolve_backend(device: str | torch.device, backend: str | None, what: str) -> tuple[torch.device, str]:
    """(device, backend): numpy on a CPU and torch elsewhere unless a backend is named; clear errors."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise FzpackError(f"{what}: invalid device {device!r}") from None
    if backend is None:
        backend = "numpy" if dev.type == "cpu" else "torch"
    if backend not in ("numpy", "torch"):
        raise FzpackError(f"unknown {what} backend {backend!r}; use 'numpy' or 'torch'")
    return dev, backend


def generate(
    spec: InitSpec,
    seed: int,
    name: str,
    shape: Sequence[int] | torch.Size,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    banks: Mapping[str, int] | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Regenerate the frozen values of tensor `name`, bit-identical on every device.

    Args:
        spec: the tensor's InitSpec.
        seed: user seed in [0, 2**32).
        name: the tensor's state_dict key (names its INIT stream).
        shape: the tensor's shape (values fill it in row-major order; dist "dct" is a function of it).
        dtype: output dtype; values are generated in float32, then cast.
        device: output device.
        banks: bank name -> bank length, needed for dist "bank".
        backend: None (numpy on CPU, torch elsewhere), "numpy" (generate on the CPU, then move),
            or "torch" (torch integer/float ops on `device`).

    Returns:
        Tensor of `shape`, `dtype`, on `device`.

    Example:
        >>> spec = InitSpec("uniform", -0.1, 0.1)
        >>> w = generate(spec, 0, "conv.weight", (8, 3, 3, 3))
        >>> torch.equal(w, generate(spec, 0, "conv.weight", (8, 3, 3, 3), backend="torch"))
        True
    """
    spec = _check_spec(spec)
    dims = _check_shape(shape)
    if dtype not in _FLOAT_DTYPES:
        raise FzpackError(f"dtype must be a floating dtype {_FLOAT_DTYPES}, got {dtype}")
    dev, backend = resolve_backend(device, backend, "generator")
    count = math.prod(dims)
    if backend == "numpy":
        values = torch.from_numpy(generate_numpy(spec, seed, name, 0, count, banks, shape=dims))
    try:
        if backend == "torch":
            values = _generate_torch(spec, seed, name, count, dev, banks, dims)
        return values.reshape(dims).to(device=dev, dtype=dtype)
    except (RuntimeError, AssertionError) as exc:  # e.g. CUDA requested but not available
        raise FzpackError(f"cannot generate {name!r} on device {dev}: {exc}") from None

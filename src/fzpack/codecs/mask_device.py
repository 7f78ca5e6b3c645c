"""Mask decoding for a restore onto a GPU: the frozen weights (the |W0| context) never leave the device.

A FACTOR payload needs every entry's |W0| bin. On a CPU the decoder reads the regenerated weights
in place; on a GPU, copying them to the host would be the dense host copy a device restore must
avoid. Here the entry codes (spec 6.3) are computed with torch ops where the weights are, only the
258 class counts come to the host, the host reads the ANS stream (an inherently sequential
walk) and sends back the ranks that read 1, and the device turns ranks into positions with one
stable sort. What crosses the bus: 2 KB of counts, the `count` ranks and the `count` positions (to
build the host copy of the mask, which the restored checkpoint holds).

Every operation is exact (IEEE float32 multiply of |W0| by the bin scale, integer sums, a stable
sort), so the mask is the CPU decoder's bit for bit; the tests run this path on CPU tensors
against the reference decoders, and on CUDA where there is one. Payloads of the other models do
not use the context and decode on the host (GAPS hands over its positions directly).
"""

from __future__ import annotations

import numpy as np
import torch

from fzpack.codecs.mask import MODEL_FACTOR, check_call, decode_mask_positions
from fzpack.codecs.mask_ans import TABLE, TABLE_SIZE
from fzpack.codecs.mask_decode import _row_table, _term_luts, read_factor_levels
from fzpack.codecs.mask_models import DEAD, W_FACTOR, W_NBINS, scale_from_code
from fzpack.errors import CodecError
from fzpack.generator.compiled import mask_kernels_for

#: eta below this is a dead entry (code 0): the numpy decoder's threshold (mask_decode._codes_of)
DEAD_BELOW = DEAD // 2


def decode_mask_device(payload: bytes, shape: tuple[int, ...], count: int,
                       context: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
    """Decode a mask whose context lives on a device: (host bool mask, positions on the context's device).

    Args:
        payload: the mask payload.
        shape: the tensor shape.
        count: the number of set entries the container declares.
        context: the regenerated float32 weights on their device (or None when the init carries
            no |W0| information).

    Returns:
        The mask as a numpy bool array of ``shape`` (what `decode_mask` returns) and the int64 flat
        positions of its set entries, increasing, on the context's device (CPU without context).

    Example:
        >>> mask, pos = decode_mask_device(bytes.fromhex("03320802"), (20,), 5, None)
        >>> pos.tolist()
        [1, 4, 5, 11, 17]
    """
    data, dims, n, count = check_call(payload, shape, count)
    if context is not None and tuple(context.shape) != tuple(dims):
        raise CodecError(f"mask context shape {tuple(context.shape)} does not match mask shape {tuple(dims)}")
    if data[0] != MODEL_FACTOR or context is None or count in (0, n):
        mask, pos = decode_mask_positions(data, dims, count, None)  # no other model reads the context
        return mask, torch.from_numpy(pos).to(context.device if context is not None else "cpu")
    try:
        flat, pos = _factor(data, dims, n, count, context)
    except CodecError:
        raise
    except Exception as exc:  # hostile input must never escape as another type
        raise CodecError(f"mask payload undecodable ({type(exc).__name__}: {exc})") from None
    return flat.reshape(dims), pos


def _codes(model, dims: tuple[int, ...], n: int, context: torch.Tensor) -> torch.Tensor:
    """Every entry's code (0 dead, else class + 1), computed where the context is (spec 6.3)."""
    dev = context.device
    luts = _term_luts(model)
    d0 = int(dims[0]) if len(dims) > 1 else 1
    eta = torch.full((d0, n // d0 if d0 else 0), int(model.base), dtype=torch.int64, device=dev)
    if 0 in luts:
        eta += torch.from_numpy(luts[0]).to(dev)[:, None]
    rowtab = _row_table(luts, dims)
    if rowtab is not None:
        eta += torch.from_numpy(np.ascontiguousarray(rowtab, dtype=np.int64)).to(dev)[None, :]
    eta = eta.reshape(-1)
    if W_FACTOR in luts:
        scale = torch.tensor(float(scale_from_code(model.scale_code)), dtype=torch.float32, device=dev)
        t = context.detach().reshape(-1).to(torch.float32).abs() * scale  # one IEEE binary32 product
        top = torch.tensor(float(W_NBINS - 1), dtype=torch.float32, device=dev)
        bins = torch.where(t < top, t, top).to(torch.int64)  # NaN and >= 15: the last bin, as fmin
        eta += torch.from_numpy(luts[W_FACTOR].astype(np.int64)).to(dev)[bins]
    return torch.where(eta < DEAD_BELOW, torch.zeros_like(eta), eta.clamp(0, TABLE_SIZE - 1) + 1)


def _factor(data: bytes, shape: tuple[int, ...], n: int, count: int, context: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    kernels = mask_kernels_for(n)
    if kernels is not None:
        from fzpack.codecs.ans_reader import FastBitReader

        model, dims, _, r = read_factor_levels(data, 1, shape, True, lambda b: FastBitReader(b, kernels))
    else:
        model, dims, _, r = read_factor_levels(data, 1, shape, True)
    codes = _codes(model, dims, n, context)
    hist = torch.bincount(codes, minlength=TABLE_SIZE + 1).cpu().numpy().astype(np.int64)
    classes, ranks = _read_ranks(r, hist, count, kernels)
    if ranks.size != count:
        raise CodecError(f"decoded mask has {ranks.size} entries set, expected {count}")
    r.finish()
    # classes lie in 1..256 and ranks[i] < hist[classes[i]] by construction (the reader reads
    # hist[c] bits for class c), so every index below is in range even for a hostile payload: an
    # out-of-range index on a GPU would be a device-side assert, not a catchable error.
    dev = context.device
    order = torch.sort(codes, stable=True).indices  # live entries class-major, increasing index within a class
    first = torch.from_numpy(np.cumsum(hist) - hist).to(dev)  # where each code's run starts in `order`
    where = first[torch.from_numpy(classes).to(dev)] + torch.from_numpy(ranks).to(dev)
    positions = torch.sort(order[where]).values
    flat = np.zeros(n, dtype=bool)
    flat[positions.cpu().numpy()] = True
    return flat, positions


def _read_ranks(r, hist: np.ndarray, count: int, kernels) -> tuple[np.ndarray, np.ndarray]:
    """(code, rank within its class) of every bit that reads 1, class by class (spec 6.3)."""
    if kernels is not None:
        ranks = np.empty(count, dtype=np.int64)
        starts = np.zeros(TABLE_SIZE + 2, dtype=np.int64)
        r.top, r.state, ones = kernels.factor_read(r.words, r.top, r.state, hist, np.asarray(TABLE, dtype=np.int64),
                                                   count, ranks, starts)
        if ones > count:
            raise CodecError(f"decoded mask has more than {count} entries set, expected {count}")
        classes = np.repeat(np.arange(TABLE_SIZE + 1, dtype=np.int64), np.diff(starts))
        return classes, ranks[:ones]
    classes, ranks = [], []
    for c in np.flatnonzero(hist[1:]) + 1:
        hit = np.flatnonzero(r.read(int(hist[c]), int(TABLE[c - 1])))
        classes.append(np.full(hit.size, c, dtype=np.int64))
        ranks.append(hit.astype(np.int64))
    if not ranks:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(classes), np.concatenate(ranks)

"""Mask decoder for model 2 (format: formats/mask-codec-v1.md): the fast path of the reader.

Same classes, same reading order and same result as
read_mask_bits(r, class_keys(model, dims, weight_bins(context, scale))), but:
* entries get a *code* (0 = dead, else class + 1) in a uint8 array (uint16 if a class above
  254 is possible), computed in cache-sized chunks from small per-factor lookup tables, with
  no full-size int32/int16 temporaries;
* when most entries sit in dead low |W0| bins (saliency masks), one float comparison per entry
  finds the candidates and only those get a code;
* only the True entries are placed: with few possible classes each class's entries are found
  by one comparison pass; otherwise the codes are stably sorted block by block (cache-sized)
  and only the ranks that read 1 are mapped back to positions.

The reference reader (`mask_models.read_mask_bits` over `class_keys`) stays the specification
in code; the tests decode random models both ways.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fzpack.codecs.mask_ans import TABLE, TABLE_SIZE, BitReader
from fzpack.codecs.mask_models import (
    DEAD,
    W_FACTOR,
    W_NBINS,
    FactorModel,
    _ngroups,
    chain_work,
    chain_work_limit,
    level_lut,
    read_header,
    read_levels,
    scale_from_code,
    view_dims,
)
from fzpack.errors import CodecError

DECODE_CHUNK = 1 << 16  # entries per chunk / sort block (local indices fit in 16 bits)
FEW_CLASSES = 8  # up to this many possible classes: one comparison pass per class


def _term_luts(model: FactorModel) -> dict[int, np.ndarray]:
    return {f.kind: level_lut(f) for f in model.factors}


def _codes_of(eta: np.ndarray) -> np.ndarray:
    """Exact int64 log2-odds sums -> codes: 0 if dead, else clamp(eta, 0, 256) + 1."""
    return np.where(eta < DEAD // 2, 0, np.clip(eta, 0, TABLE_SIZE - 1) + 1)


def _possible_codes(base: int, model: FactorModel) -> np.ndarray | None:
    """Every code an entry could get (sorted, 0 = dead included if possible), or None if too many sums."""
    dead = False
    low = min(base, 0)  # live partial sums lie in [base, 256] once capped at 256 (live terms are >= 0)
    seen = np.zeros(TABLE_SIZE - low, dtype=bool)
    sums = np.array([base], dtype=np.int64)
    for f in model.factors:
        present = np.flatnonzero(np.bincount(f.levels, minlength=f.nlev))
        dead = dead or int(present[0]) == 0
        live = (present[present > 0] - 1) * f.step
        if live.size == 0:
            return np.zeros(1, dtype=np.int64)  # every entry is dead
        if sums.size * live.size > 1 << 16:
            return None
        seen[:] = False
        seen[np.minimum(np.add.outer(sums, live).ravel(), TABLE_SIZE - 1) - low] = True
        sums = np.flatnonzero(seen) + low
    codes = np.clip(sums, 0, TABLE_SIZE - 1) + 1  # sorted
    codes = codes[np.concatenate([[True], codes[1:] != codes[:-1]])]
    return np.concatenate([[0], codes]) if dead else codes


def _chunks(n: int, d0: int, rowlen: int) -> list[tuple[int, int]]:
    """Chunk bounds: whole rows of the view when a row fits a chunk, else pieces of one row."""
    if rowlen <= DECODE_CHUNK:
        step = DECODE_CHUNK // rowlen
        return [(r * rowlen, min(r + step, d0) * rowlen) for r in range(0, d0, step)]
    return [(a, min(a + DECODE_CHUNK, (r + 1) * rowlen)) for r in range(d0) for a in range(r * rowlen, (r + 1) * rowlen, DECODE_CHUNK)]


def _row_table(luts: dict[int, np.ndarray], dims: tuple[int, ...]) -> np.ndarray | None:
    """Kinds 1 and 2 summed over one row of the view (axis 0 fixed), or None without them."""
    if 1 not in luts and 2 not in luts:
        return None
    if len(dims) == 2:
        return luts[1]
    t = np.zeros((dims[1], dims[2]), dtype=np.int64)
    if 1 in luts:
        t += luts[1][:, None]
    if 2 in luts:
        t += luts[2][None, :]
    return t.reshape(-1)


def entry_codes(model: FactorModel, dims: tuple[int, ...], context: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Per entry (C order) its code: 0 if dead, else class + 1; and the possible codes (or None).

    Equal to ``class_keys(model, dims, bins) + 1`` for ``bins = weight_bins(context, scale)``.
    """
    n = int(np.prod(dims, dtype=np.int64))
    d0 = int(dims[0]) if len(dims) > 1 else 1
    rowlen = n // d0
    luts = _term_luts(model)
    base = int(model.base)
    possible = _possible_codes(base, model)
    if possible is not None:
        maxcode = int(possible[-1])
    else:  # live terms are >= 0, so this bounds every live sum
        maxcode = min(base + sum(int(v.max(initial=0)) for v in luts.values()), TABLE_SIZE - 1) + 1
    kdt = np.uint8 if maxcode <= 255 else np.uint16
    keys = np.empty(n, dtype=kdt)
    a0 = luts.get(0)
    rowtab = _row_table(luts, dims)
    has_w = W_FACTOR in luts
    if not has_w and (a0 is None or rowtab is None):  # a code per row or a code pattern per row
        view = keys.reshape(d0, rowlen)
        view[...] = _codes_of(base + a0)[:, None] if rowtab is None else _codes_of(base + rowtab)[None, :]
        return keys, possible
    bounds = _chunks(n, d0, rowlen)
    size = max(e - a for a, e in bounds)
    idx = np.empty(size, dtype=np.int64)
    if has_w:
        ctx = np.asarray(context).reshape(-1)
        scale = scale_from_code(model.scale_code)
        fbuf = np.empty(size, dtype=np.float32)
    direct = has_w and rowtab is None  # code = table[bin] or table[row, bin]
    if direct:
        if a0 is None:
            table = _codes_of(base + luts[W_FACTOR]).astype(kdt)
        else:
            table = _codes_of(base + a0[:, None] + luts[W_FACTOR][None, :]).astype(kdt).ravel()
            row_off = np.arange(d0, dtype=np.int64) * W_NBINS
    else:
        # eta + shift is >= 1 for every live entry and < 0 for every dead one (|base| < 2**15,
        # live terms >= 0, dead sums < -2**19); after clipping to [0, hi] a table maps it to the code.
        shift = 1 - min(base, 0)
        hi = TABLE_SIZE - 1 + shift
        j = np.arange(hi + 1, dtype=np.int64)
        table = np.where(j == 0, 0, np.clip(j - shift, 0, TABLE_SIZE - 1) + 1).astype(kdt)
        wlut = luts[W_FACTOR] + (base + shift) if has_w else None
        eta_buf = np.empty(size, dtype=np.int64)
    for a, e in bounds:
        m = e - a
        ib = idx[:m]
        r0 = a // rowlen
        whole_rows = rowlen <= DECODE_CHUNK
        if has_w:  # bin = min(floor(|c| * scale), 15) in float32 (NaN -> 15), as weight_bins
            f = fbuf[:m]
            np.abs(ctx[a:e], out=f)
            with np.errstate(over="ignore", invalid="ignore"):
                np.multiply(f, scale, out=f)
            np.fmin(f, np.float32(W_NBINS - 1), out=f)
            ib[...] = f
        if direct:
            if a0 is not None:
                if whole_rows:
                    ib.reshape(-1, rowlen)[...] += row_off[r0 : e // rowlen, None]
                else:
                    ib += row_off[r0]
            np.take(table, ib, out=keys[a:e], mode="clip")
            continue
        eta = eta_buf[:m]
        if has_w:
            np.take(wlut, ib, out=eta, mode="clip")
        else:
            eta.fill(base + shift)
        if whole_rows:
            rows = eta.reshape(-1, rowlen)
            if a0 is not None:
                rows += a0[r0 : e // rowlen, None]
            rows += rowtab
        else:
            if a0 is not None:
                eta += a0[r0]
            eta += rowtab[a - r0 * rowlen : e - r0 * rowlen]
        np.clip(eta, 0, hi, out=eta)
        np.take(table, eta, out=keys[a:e], mode="clip")
    return keys, possible


def _live_codes(model: FactorModel, dims: tuple[int, ...], context: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(codes, possible codes, live): the codes of all entries (live None) or, when most entries
    are dead, of the live entries only, in order, with their positions in ``live``."""
    pre = _dead_bins_prefilter(model, dims, context)
    if pre is not None:
        return pre
    codes, possible = entry_codes(model, dims, context)
    if int(np.count_nonzero(codes)) * 2 < codes.size:  # mostly dead: keep the live entries only
        live = np.flatnonzero(codes != 0)
        return codes[live], possible, live
    return codes, possible, None


def _dead_bins_prefilter(model: FactorModel, dims: tuple[int, ...], context: np.ndarray | None):
    """Live codes straight from the context when the |W0| factor kills every bin below some b0 > 0
    and most entries fall there (typical of saliency masks): one comparison per entry finds the
    candidates, and only those get a bin, a log-odds sum and a code. None when this does not apply."""
    luts = _term_luts(model)
    if W_FACTOR not in luts:
        return None
    wl = luts[W_FACTOR]
    live_bins = np.flatnonzero(wl != DEAD)
    if live_bins.size == 0 or live_bins[0] == 0:
        return None
    b0 = np.float32(live_bins[0])  # bins below b0 are dead; bins from b0 on may be dead too
    n = int(np.prod(dims, dtype=np.int64))
    ctx = np.asarray(context).reshape(-1)
    scale = scale_from_code(model.scale_code)
    with np.errstate(over="ignore", invalid="ignore"):
        sample = np.abs(ctx[:: max(1, n // 4096)]) * scale
    if np.count_nonzero(sample < b0) * 4 < sample.size * 3:  # fewer than ~3/4 dead: not worth it
        return None
    d0 = int(dims[0]) if len(dims) > 1 else 1
    rowlen = n // d0
    a0 = luts.get(0)
    rowtab = _row_table(luts, dims)
    possible = _possible_codes(int(model.base), model)
    kdt = np.uint8 if possible is not None and int(possible[-1]) <= 255 else np.uint16
    wl = wl + int(model.base)
    bounds = _chunks(n, d0, rowlen)
    fbuf = np.empty(max(e - a for a, e in bounds), dtype=np.float32)
    positions, codes = [], []
    for a, e in bounds:
        f = fbuf[: e - a]
        np.abs(ctx[a:e], out=f)
        with np.errstate(over="ignore", invalid="ignore"):
            np.multiply(f, scale, out=f)
        np.fmin(f, np.float32(W_NBINS - 1), out=f)  # NaN -> 15, as weight_bins
        pos = np.flatnonzero(f >= b0)  # every other entry is in a dead bin
        eta = wl[f[pos].astype(np.int64)]  # exact integer sums, as class_keys
        pos += a
        if a0 is not None:
            eta += a0[pos // rowlen]
        if rowtab is not None:
            eta += rowtab[pos % rowlen]
        c = _codes_of(eta)
        keep = np.flatnonzero(c)  # other dead bins, dead rows / columns / positions
        positions.append(pos[keep])
        codes.append(c[keep].astype(kdt))
    live = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    return (np.concatenate(codes) if codes else np.zeros(0, dtype=kdt)), possible, live


def decode_mask_bits(r: BitReader, model: FactorModel, dims: tuple[int, ...], context: np.ndarray | None) -> np.ndarray:
    """Read the mask bits of model 2 (levels already read) into a flat bool array."""
    n = int(np.prod(dims, dtype=np.int64))
    codes, possible, live = _live_codes(model, dims, context)
    picked: list[np.ndarray] = []  # indices into `codes` of the entries that read 1
    if possible is not None and possible.size <= FEW_CLASSES:
        for c in possible[possible > 0].tolist():
            hit = codes == c
            count = int(np.count_nonzero(hit))
            if count:
                js = np.flatnonzero(r.read(count, int(TABLE[c - 1])))
                if js.size:
                    picked.append(np.flatnonzero(hit)[js])
    else:
        picked = _pick_sorted(r, codes)
    out = np.zeros(n, dtype=bool)
    if picked:
        idx = np.concatenate(picked) if len(picked) > 1 else picked[0]
        out[idx if live is None else live[idx]] = True
    return out


def _pick_sorted(r: BitReader, codes: np.ndarray) -> list[np.ndarray]:
    """Read every live class in turn; the entries that read 1, via block-wise stable sorts.

    In the stable order by code, code c's entries in block b form one run; a bit's rank in the
    whole order finds its run (class-major, then block) and its place in that block's own sort.
    """
    if codes.size <= 4 * DECODE_CHUNK:  # small: one sort, the rank is the index into it
        per = np.bincount(codes, minlength=TABLE_SIZE + 1)
        parts = [r.read(int(per[c]), int(TABLE[c - 1])) for c in (np.flatnonzero(per[1:]) + 1).tolist()]
        rank = np.flatnonzero(np.concatenate(parts)) + per[0] if parts else np.zeros(0, dtype=np.int64)
        return [np.argsort(codes, kind="stable")[rank]] if rank.size else []
    nb = -(-codes.size // DECODE_CHUNK)
    cnt = np.zeros((nb, TABLE_SIZE + 1), dtype=np.int64)
    for b in range(nb):
        cnt[b] = np.bincount(codes[b * DECODE_CHUNK : (b + 1) * DECODE_CHUNK], minlength=TABLE_SIZE + 1)
    per = cnt.sum(0)
    parts = [r.read(int(per[c]), int(TABLE[c - 1])) for c in (np.flatnonzero(per[1:]) + 1).tolist()]
    if not parts:
        return []
    rank = np.flatnonzero(np.concatenate(parts)) + per[0]  # rank in the stable sort by code
    if rank.size == 0:
        return []
    runs = cnt.T.ravel()  # run (c, b) at c * nb + b, in sorted order
    ends = np.cumsum(runs)
    run = np.searchsorted(ends, rank, side="right")
    blk, cls = np.divmod(run, nb)[::-1]
    local = (np.cumsum(cnt, axis=1) - cnt)[blk, cls] + rank - (ends[run] - runs[run])
    out = []
    by_block = np.argsort(blk, kind="stable")
    blk, local = blk[by_block], local[by_block]
    edges = np.searchsorted(blk, np.arange(nb + 1))
    for b in np.flatnonzero(np.diff(edges)).tolist():
        a = b * DECODE_CHUNK
        order = np.argsort(codes[a : a + DECODE_CHUNK], kind="stable")
        out.append(order[local[edges[b] : edges[b + 1]]] + a)
    return out


def read_factor_levels(data: bytes, pos: int, shape, has_context: bool, reader: Callable[[bytes], Any] = BitReader
                       ) -> tuple[FactorModel, tuple[int, ...], int, Any]:
    """A FACTOR payload up to its entry bits, as every model-2 decoder reads it (mask-codec-v1 section 6).

    Reads the header (from byte ``pos``, after the model byte), checks the declared work and the
    payload length against their bounds, opens the bit stream with ``reader`` and reads every
    factor's levels, checked against its histogram. Returns (model with levels, view dims, n, the
    reader positioned at the entry bits).
    """
    dims = view_dims(shape)
    n = int(np.prod(dims, dtype=np.int64))
    model, hists, pos = read_header(data, pos, shape, has_context)
    work = chain_work(model, dims)
    if work > chain_work_limit(n):
        raise CodecError("mask payload declares more level symbols than the format allows")
    # Every coded bit costs at most 16 bits (probabilities are clamped to [2**-16, 1 - 2**-16]).
    if len(data) - pos > 2 * (n + work) + 8:
        raise CodecError("mask payload longer than any valid encoding")
    r = reader(data[pos:])
    for f, h in zip(model.factors, hists):
        f.levels = read_levels(r, _ngroups(f.kind, dims), f.nlev, h)
        if f.counts and not np.array_equal(np.bincount(f.levels, minlength=f.nlev), h):
            raise CodecError("mask payload: decoded levels do not match their histogram")
    return model, dims, n, r


def decode_factor_model(data: bytes, pos: int, shape, context) -> np.ndarray:
    model, dims, _, r = read_factor_levels(data, pos, shape, context is not None)
    out = decode_mask_bits(r, model, dims, context)
    r.finish()
    return out

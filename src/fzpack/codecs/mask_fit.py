"""Encoder-side fitting of the structured mask model (model id 2).

Nothing here affects decodability: the decoder only needs the integer levels the encoder
writes. The fit is a logistic regression with one additive effect per group of each factor,
quantised to the table grid and polished by coordinate search on the estimated code length.
Large masks are fitted on all set entries plus a fixed-seed uniform sample of the others
(weighted), so encoding stays fast and deterministic.
"""

from __future__ import annotations

import math

import numpy as np

from fzpack.codecs.mask_ans import COST0, COST1, TABLE_CENTER, TABLE_SIZE, TABLE_STEPS_PER_BIT
from fzpack.codecs.mask_models import (
    MAX_LEVELS,
    W_FACTOR,
    W_NBINS,
    Factor,
    FactorModel,
    axis_kinds,
    chain_work,
    chain_work_limit,
    code_for_scale,
    scale_from_code,
    view_dims,
    weight_bins,
)

SAMPLE_CAP = 1 << 19  # masks up to this size are fitted exactly; larger ones on a sample
#: Masks larger than this choose their factor set and level steps on a smaller sample (same rule,
#: same seed), then fit, quantise and polish (one round) the chosen set on the SAMPLE_CAP one: the
#: choice rarely depends on the extra entries, and it was most of the encoding time of large masks.
SEARCH_CAP = 1 << 15
POLISH_ROUNDS_FULL = 1  # after the finalists were polished twice on the search sample
SAMPLE_SEED = 0x6D61736B
NEWTON_SWEEPS = 6
WARM_SWEEPS = 3
RIDGE = 1.0
DEFAULT_STEP = 8
W_TOP_QUANTILE = 0.9995  # the 16 |W0| bins span [0, this quantile of |W0|]
REFINE_TOP = 2  # factor sets that get the step search, polish and a real encode
STEP_CHOICES = (5, 8, 12, 16, 24)
UNITS_PER_NAT = TABLE_STEPS_PER_BIT / math.log(2.0)
_COSTS = np.stack([np.asarray(COST0, dtype=np.float64), np.asarray(COST1, dtype=np.float64)])  # [y, class] -> bits


class Sample:
    """All set entries plus a uniform sample of the unset ones, with inverse-rate weights."""

    def __init__(self, flat: np.ndarray, shape, bins: np.ndarray | None, kinds: list[int], cap: int = SAMPLE_CAP):
        n = flat.size
        dims = view_dims(shape)
        ones = np.flatnonzero(flat)
        if n <= cap:
            idx = np.arange(n)
            wt = np.ones(n)
        else:
            # Bernoulli sampling of the unset entries at a fixed rate; weight = 1 / rate.
            rate = cap / n
            rng = np.random.default_rng(SAMPLE_SEED)
            idx = np.flatnonzero((rng.random(n, dtype=np.float32) < np.float32(rate)) | flat)
            wt = np.where(flat[idx], 1.0, 1.0 / rate)
        self.y = flat[idx]
        self.wt = wt
        self.groups, self.dead, self.sizes = {}, {}, {}
        for k in kinds:
            size = W_NBINS if k == W_FACTOR else dims[k]
            self.groups[k] = _group_of(idx, dims, k, bins)
            self.dead[k] = np.bincount(_group_of(ones, dims, k, bins), minlength=size) == 0
            self.sizes[k] = size


def _group_of(flat_idx: np.ndarray, dims, kind: int, bins) -> np.ndarray:
    if kind == W_FACTOR:
        return bins[flat_idx].astype(np.int32)
    inner = int(np.prod(dims[kind + 1 :], dtype=np.int64))
    return ((flat_idx // inner) % dims[kind]).astype(np.int32)


class Problem:
    """The sampled entries that are live (coded) under one factor set."""

    def __init__(self, s: Sample, kinds: list[int]):
        live = np.ones(s.y.size, dtype=bool)
        for k in kinds:
            live &= ~s.dead[k][s.groups[k]]
        self.kinds = kinds
        self.y, self.wt = s.y[live], s.wt[live]
        self.groups = [s.groups[k][live] for k in kinds]
        self.dead = [s.dead[k] for k in kinds]
        self.sizes = [s.sizes[k] for k in kinds]
        self.ones = np.flatnonzero(self.y)
        self.yi = self.y.astype(np.intp)
        self.wt1 = self.wt[self.ones]
        # all weights 1 (an exact fit): integer counts give the same sums as the float ones
        self.unit = bool(self.wt.size == 0 or (self.wt == 1.0).all())

    def eta(self, base: int, levels: list[np.ndarray], steps: list[int]) -> np.ndarray:
        e = np.full(self.y.size, base, dtype=np.int32)
        for g, lv, st in zip(self.groups, levels, steps):
            e += ((lv.astype(np.int32) - 1) * st)[g]
        return e

    def bits(self, eta: np.ndarray) -> float:
        """Estimated mask bits; entries pushed below 0 cost as if coded at index 0."""
        idx = np.clip(eta, 0, TABLE_SIZE - 1)
        if self.unit:
            n1 = np.bincount(idx[self.ones], minlength=TABLE_SIZE).astype(np.float64)
            n0 = np.bincount(idx, minlength=TABLE_SIZE) - n1
        else:
            n1 = np.bincount(idx[self.ones], self.wt1, minlength=TABLE_SIZE)
            n0 = np.bincount(idx, self.wt, minlength=TABLE_SIZE) - n1
        return float(n1 @ COST1 + n0 @ COST0)


def _newton(p: Problem, theta: list[np.ndarray], b: float, sweeps: int) -> list[np.ndarray]:
    """Weighted logistic fit of eta = b + sum_f theta_f[group] by per-factor Newton sweeps.

    A small ridge penalty keeps groups with little data (or few sampled zeros) from
    over-fitting the sample.
    """
    yy, wt = p.y.astype(np.float64), p.wt
    eta = b + sum((t[g] for t, g in zip(theta, p.groups)), np.zeros(yy.size))
    for _ in range(sweeps):
        for f, g in enumerate(p.groups):
            pr = 1.0 / (1.0 + np.exp(-eta))
            resid, curv = yy - pr, pr * (1.0 - pr)
            if not p.unit:  # unit weights: multiplying by 1.0 changes no bit
                resid, curv = wt * resid, wt * pr * (1.0 - pr)
            grad = np.bincount(g, resid, minlength=p.sizes[f]) - RIDGE * theta[f]
            hess = np.bincount(g, curv, minlength=p.sizes[f]) + RIDGE + 1e-3
            delta = np.clip(grad / hess, -3.0, 3.0)
            delta[p.dead[f]] = 0.0
            theta[f] = np.clip(theta[f] + delta, -40.0, 40.0)
            eta += delta[g]
    return theta


def _quantize(p: Problem, theta, b: float, steps: list[int]):
    levels, base = [], b * UNITS_PER_NAT + TABLE_CENTER
    for t, d, st in zip(theta, p.dead, steps):
        v = np.round(t * UNITS_PER_NAT / st).astype(np.int64)
        lo = int(v[~d].min()) if (~d).any() else 0
        lv = np.clip(v - lo + 1, 1, MAX_LEVELS - 1)
        lv[d] = 0
        levels.append(lv.astype(np.int32))
        base += lo * st
    return int(round(base)), levels


def _polish(p: Problem, base: int, levels, steps, rounds: int = 2):
    """Coordinate search: shift each group's level by +-1 where the estimated cost drops."""
    for _ in range(rounds):
        for f, (g, st) in enumerate(zip(p.groups, steps)):
            eta = p.eta(base, levels, steps)
            costs = []
            for d in (-st, 0, st):
                c = _COSTS[p.yi, np.clip(eta + d, 0, TABLE_SIZE - 1)]  # COST1 where y, else COST0
                costs.append(np.bincount(g, c if p.unit else p.wt * c, minlength=p.sizes[f]))
            choice = np.argmin(np.stack(costs), axis=0) - 1
            live = ~p.dead[f]
            lv = levels[f].copy()
            lv[live] = np.clip(lv[live] + choice[live], 1, MAX_LEVELS - 1)
            if live.any():
                shift = int(lv[live].min()) - 1
                lv[live] -= shift
                base += shift * st
            levels[f] = lv
        eta = p.eta(base, levels, steps)
        shifts = list(range(-4, 5))
        base += shifts[int(np.argmin([p.bits(eta + s) for s in shifts]))]
    return int(np.clip(base, -32768, 32767)), levels


def side_bits(levels: np.ndarray, nlev: int) -> tuple[float, bool]:
    """Approximate bits for one factor's levels; True if the histogram mode is cheaper."""
    h = np.bincount(levels, minlength=nlev)
    nz = h[h > 0]
    varint_bytes = sum(1 + (int(c).bit_length() - 1) // 7 if c else 1 for c in h)
    hist_mode = float(-(nz * np.log2(nz / levels.size)).sum()) + 8.0 * varint_bytes
    uniform = levels.size * math.log2(nlev) if nlev > 1 else 0.0
    return (hist_mode, True) if hist_mode < uniform else (uniform, False)


def build_model(p: Problem, base: int, levels, steps, scale_code: int):
    """FactorModel plus its estimated size in bytes (header + levels + mask bits)."""
    factors, total = [], 8.0 * (3 + (2 if W_FACTOR in p.kinds else 0))
    for k, lv, st in zip(p.kinds, levels, steps):
        nlev = int(lv.max()) + 1
        bits, counts = side_bits(lv, nlev)
        total += bits + 16.0
        factors.append(Factor(k, st, nlev, lv.astype(np.int32), counts))
    total += p.bits(p.eta(base, levels, steps))
    return FactorModel(base, factors, scale_code), total / 8.0


def quick_fit(p: Problem, theta=None, b=None):
    """Float fit + quantisation with default steps; returns (estimated bytes, (theta, b))."""
    if theta is None:
        theta = [np.zeros(s) for s in p.sizes]
        sweeps = NEWTON_SWEEPS
    else:
        sweeps = WARM_SWEEPS
    if b is None:
        m = float(np.average(p.y, weights=p.wt)) if p.y.size else 0.5
        m = min(max(m, 1e-6), 1 - 1e-6)
        b = math.log(m / (1 - m))
    theta = _newton(p, theta, b, sweeps)
    steps = [DEFAULT_STEP] * len(p.kinds)
    base, levels = _quantize(p, theta, b, steps)
    _, est = build_model(p, base, levels, steps, 0)
    return est, (theta, b)


def choose_steps(p: Problem, scale_code: int, theta, b: float) -> list[int]:
    """Each factor's level step in turn, the one of least estimated size (others at their best so far)."""
    steps = [DEFAULT_STEP] * len(p.kinds)
    best = None
    for f in range(len(steps)):
        for st in STEP_CHOICES:
            trial = steps.copy()
            trial[f] = st
            base, levels = _quantize(p, theta, b, trial)
            _, est = build_model(p, base, levels, trial, scale_code)
            if best is None or est < best[0] - 1e-9:
                best = (est, trial)
        steps = best[1]
    return steps


def refine_fit(p: Problem, scale_code: int, params, steps: list[int] | None = None, rounds: int = 2) -> tuple[FactorModel, float]:
    """Quantise with ``steps`` (default: `choose_steps` on ``p``) and polish; returns (model, est. bytes)."""
    theta, b = params
    steps = choose_steps(p, scale_code, theta, b) if steps is None else steps
    base, levels = _quantize(p, theta, b, steps)
    base, levels = _polish(p, base, levels, steps, rounds=rounds)
    return build_model(p, base, levels, steps, scale_code)


def _choose_scale_code(context: np.ndarray) -> int | None:
    """Scale code so that the 16 bins span [0, a high quantile of |W0|]; None if useless."""
    a = np.abs(context.ravel()[:: max(1, context.size // 1_000_000)])
    a = a[np.isfinite(a)]
    if a.size < 2 or float(a.min()) == float(a.max()):
        return None
    top = float(np.quantile(a, W_TOP_QUANTILE))
    return code_for_scale(W_NBINS / top) if top > 0.0 else None


def factor_candidates(flat, shape, context):
    """Backward elimination over factor sets; returns [(model, bins)], best estimate first."""
    kinds = axis_kinds(shape)
    scale_code, bins = 0, None
    if context is not None:
        code = _choose_scale_code(context)
        if code is not None:
            scale_code, bins = code, weight_bins(context, scale_from_code(code))
            kinds = kinds + [W_FACTOR]
    if not kinds:
        return []
    sample = Sample(flat, shape, bins, kinds)
    small = Sample(flat, shape, bins, kinds, SEARCH_CAP) if flat.size > SEARCH_CAP else sample
    fits: dict[tuple[int, ...], tuple] = {}

    def fit(ks: tuple[int, ...], parent: tuple[int, ...] | None = None) -> None:
        if ks not in fits:
            theta = b = None
            if parent is not None:
                pt, pb = fits[parent][1]
                theta, b = [pt[parent.index(k)].copy() for k in ks], pb
            fits[ks] = quick_fit(Problem(small, list(ks)), theta, b)

    current = tuple(kinds)
    fit(current)
    while len(current) > 1:
        trials = [tuple(k for k in current if k != drop) for drop in current]
        for t in trials:
            fit(t, current)
        best = min(trials, key=lambda t: fits[t][0])
        if fits[best][0] >= fits[current][0]:
            break
        current = best
    ranked = sorted(fits, key=lambda ks: (fits[ks][0], ks))[:REFINE_TOP]
    # what to refine: (factor set, params, steps or None to choose them, problem, polish rounds)
    if small is sample:
        refined = [(ks, fits[ks][1], None, Problem(sample, list(ks)), 2) for ks in ranked]
    else:  # steps chosen (and finalists compared, refined) on the small sample; the winner refit on the full one
        problems = {ks: Problem(small, list(ks)) for ks in ranked}
        steps = {ks: choose_steps(problems[ks], scale_code, *fits[ks][1]) for ks in ranked}
        if len(ranked) > 1:
            ranked = [min(ranked, key=lambda ks: (refine_fit(problems[ks], scale_code, fits[ks][1], steps[ks])[1], ks))]
        ks = ranked[0]
        full = Problem(sample, list(ks))
        theta, b = fits[ks][1]
        refined = [(ks, (_newton(full, [t.copy() for t in theta], b, WARM_SWEEPS), b), steps[ks], full, POLISH_ROUNDS_FULL)]
    out = []
    dims, n = view_dims(shape), flat.size
    for ks, params, steps, problem, rounds in refined:
        model, est = refine_fit(problem, scale_code, params, steps, rounds)
        if chain_work(model, dims) <= chain_work_limit(n):
            out.append((est, ks, model))
    return [(model, bins) for _, _, model in sorted(out, key=lambda t: (t[0], t[1]))]

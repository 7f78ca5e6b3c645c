"""The structured mask model (model id 2) shared by encoder and decoder.

A mask is viewed as a 1-, 2- or 3-axis array (``view_dims``). Each *factor* splits the entries
into groups - the index along one view axis, or a bin of the frozen weight's magnitude |W0| -
and gives every group an integer *level*. Level 0 marks a group whose entries are all 0 (they
are not coded at all); otherwise the level adds ``step * (level - 1)`` table steps to the
entry's log2-odds. Everything here is integer arithmetic (plus one IEEE float32 multiply for
the |W0| bins), so encoder and decoder compute identical probabilities on every platform.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from fzpack.codecs.mask_ans import (
    TABLE,
    TABLE_SIZE,
    BitReader,
    BitWriter,
    get_varint,
    ratio_prob,
)
from fzpack.container.bytes_io import append_varint
from fzpack.errors import CodecError

MAX_STEP = 64
MAX_LEVELS = 255
W_NBINS = 16  # number of |W0| bins (fixed in format v1)
W_FACTOR = 3  # factor kind of the |W0|-bin factor; kinds 0..2 are view axes
DEAD = -(1 << 20)  # level-0 contribution: drives eta below 0 whatever the other terms are


def view_dims(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Axes the structured model sees: (n,), (rows, cols) or (out, in, spatial)."""
    if len(shape) <= 1:
        return (int(np.prod(shape, dtype=np.int64)),)
    if len(shape) == 2:
        return (int(shape[0]), int(shape[1]))
    return (int(shape[0]), int(shape[1]), int(np.prod(shape[2:], dtype=np.int64)))


def axis_kinds(shape: tuple[int, ...]) -> list[int]:
    """Axis factors allowed for this shape (none for 1-D: a per-entry level is pointless)."""
    dims = view_dims(shape)
    return list(range(len(dims))) if len(dims) >= 2 else []


def scale_from_code(code: int) -> np.float32:
    """Bin scale (256 + low byte) * 2**(high byte - 136), exact in float32."""
    return np.float32(np.ldexp(np.float32(256 + (code & 0xFF)), (code >> 8) - 136))


def scale_code_valid(code: int) -> bool:
    # Keeps the scale a normal float32 (no subnormals, whose handling can differ by platform).
    return 10 <= code >> 8 <= 250


def code_for_scale(scale: float) -> int | None:
    """Largest representable scale <= ``scale``; None if out of range."""
    if not (math.isfinite(scale) and scale > 0):
        return None
    mant, exp = math.frexp(scale)  # scale = mant * 2**exp, 0.5 <= mant < 1
    code = ((exp - 1 + 128) << 8) | min(255, int((mant * 2.0 - 1.0) * 256.0))
    return code if 0 <= code >> 8 <= 255 and scale_code_valid(code) else None


def weight_bins(context: np.ndarray, scale: np.float32) -> np.ndarray:
    """Bin min(floor(|w| * scale), 15) computed in float32; NaN and inf go to the last bin."""
    t = np.abs(np.asarray(context, dtype=np.float32).ravel())
    with np.errstate(over="ignore", invalid="ignore"):
        t *= np.float32(scale)
    # fmin ignores NaN, so NaN maps to the last bin like +inf does.
    return np.fmin(t, np.float32(W_NBINS - 1), out=t).astype(np.uint8)


@dataclass
class Factor:
    kind: int  # 0..2: view axis, 3: |W0| bins
    step: int  # table steps per level, 1..MAX_STEP
    nlev: int  # number of levels L (level 0 = dead group)
    levels: np.ndarray  # int32, one level per group
    counts: bool  # True: level histogram transmitted; False: uniform level distribution


@dataclass
class FactorModel:
    base: int
    factors: list[Factor]
    scale_code: int = 0  # only meaningful with a W_FACTOR factor


def level_lut(f: Factor) -> np.ndarray:
    """Per group of factor ``f`` its log2-odds term in table steps (int64): DEAD for level 0."""
    lv = f.levels.astype(np.int64)
    return np.where(lv > 0, (lv - 1) * f.step, DEAD)


def class_keys(model: FactorModel, dims: tuple[int, ...], bins: np.ndarray | None) -> np.ndarray:
    """Per entry (C order) its table index 0..256, or -1 if a dead group makes it a known 0."""
    eta: np.ndarray | None = None
    owned = False  # eta is a full-size array of our own (safe to update in place)
    # Axis terms are broadcast views; adding two of them materialises the full array in one
    # pass, which is cheaper than filling it with `base` first.
    for f in sorted(model.factors, key=lambda f: f.kind):
        lut = level_lut(f).astype(np.int32)
        if eta is None:
            lut += np.int32(model.base)
        if f.kind == W_FACTOR:
            assert bins is not None
            term = lut[bins].reshape(dims)
        else:
            shape = [1] * len(dims)
            shape[f.kind] = dims[f.kind]
            term = lut.reshape(shape)
        if eta is None:
            eta, owned = term, f.kind == W_FACTOR
        elif owned and eta.shape == dims:
            eta += term
        else:
            eta, owned = np.add(eta, term), True
    assert eta is not None
    if not owned or eta.shape != dims:
        eta = np.array(np.broadcast_to(eta, dims), dtype=np.int32)
    # Live sums stay above -2**17 (|base| < 2**15, <= 4 terms < 2**14), dead ones below -2**19.
    dead = eta < DEAD // 2
    np.clip(eta, 0, TABLE_SIZE - 1, out=eta)
    eta[dead] = -1
    return eta.astype(np.int16).ravel()


def live_order(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coded entries in coding order (stable sort by key) and the entry count per key 0..256."""
    # Viewed as uint16 the dead key -1 becomes 65535: no temporary "+1" array is needed.
    counts = np.bincount(keys.view(np.uint16), minlength=1 << 16)
    dead, per = int(counts[-1]), counts[:TABLE_SIZE]
    if dead * 2 > keys.size:
        # Mostly dead: sorting only the live entries gives the same order, faster.
        live = np.flatnonzero(keys >= 0)
        return live[np.argsort(keys[live], kind="stable")], per
    return np.argsort(keys, kind="stable")[dead:], per


def write_mask_bits(w: BitWriter, flat: np.ndarray, keys: np.ndarray) -> None:
    if flat[keys < 0].any():
        raise ValueError("a set entry lies in a dead group")
    order, per = live_order(keys)
    sb = flat[order]
    pos = 0
    for v in np.flatnonzero(per):
        c = int(per[v])
        w.add(sb[pos : pos + c], int(TABLE[v]))
        pos += c


def read_mask_bits(r: BitReader, keys: np.ndarray) -> np.ndarray:
    """Reference reader over precomputed keys (the decoder uses the faster `decode_mask_bits`)."""
    order, per = live_order(keys)
    parts = [r.read(int(per[v]), int(TABLE[v])) for v in np.flatnonzero(per)]
    out = np.zeros(keys.size, dtype=bool)
    if parts:
        out[order] = np.concatenate(parts)
    return out


def _hist(f: Factor) -> np.ndarray:
    if f.counts:
        return np.bincount(f.levels, minlength=f.nlev).astype(np.int64)
    return np.ones(f.nlev, dtype=np.int64)


def write_levels(w: BitWriter, f: Factor) -> None:
    """Unary chain: at stage t, groups with level >= t say whether their level is > t."""
    h = _hist(f)
    ge = int(h.sum())
    alive = f.levels
    for t in range(f.nlev - 1):
        gt = ge - int(h[t])
        if 0 < gt < ge:
            w.add(alive > t, ratio_prob(gt, ge))
        alive = alive[alive > t]
        ge = gt


def read_levels(r: BitReader, ngroups: int, nlev: int, hist: np.ndarray) -> np.ndarray:
    levels = np.zeros(ngroups, dtype=np.int32)
    alive = np.arange(ngroups)
    ge = int(hist.sum())
    for t in range(nlev - 1):
        gt = ge - int(hist[t])
        if gt <= 0 or alive.size == 0:
            break
        if gt < ge:
            alive = alive[r.read(alive.size, ratio_prob(gt, ge))]
        levels[alive] = t + 1
        ge = gt
    return levels


def _ngroups(kind: int, dims: tuple[int, ...]) -> int:
    return W_NBINS if kind == W_FACTOR else dims[kind]


def chain_work(model: FactorModel, dims: tuple[int, ...]) -> int:
    """Upper bound on the level bits a decoder reads: sum over factors of groups * (L - 1)."""
    return sum(_ngroups(f.kind, dims) * (f.nlev - 1) for f in model.factors)


def chain_work_limit(n: int) -> int:
    """Largest chain_work a payload may declare; keeps hostile input to O(n) decoding work."""
    return 16 * n + 4096


def write_header(out: bytearray, model: FactorModel) -> None:
    flags = 0
    for f in model.factors:
        flags |= 1 << f.kind
    out.append(flags)
    if flags & (1 << W_FACTOR):
        out += struct.pack("<H", model.scale_code)
    out += struct.pack("<h", model.base)
    for f in model.factors:
        out += bytes(((f.step - 1) | (int(f.counts) << 6), f.nlev))
        if f.counts:
            for c in np.bincount(f.levels, minlength=f.nlev):
                append_varint(out, int(c))


def _need(data: bytes, pos: int, size: int) -> None:
    if pos + size > len(data):
        raise CodecError("mask payload truncated in the structured-model header")


def read_header(data: bytes, pos: int, shape: tuple[int, ...], has_context: bool):
    """Parse model 2's header; returns (model with empty levels, histograms, new position)."""
    dims = view_dims(shape)
    _need(data, pos, 1)
    flags = data[pos]
    pos += 1
    allowed = sum(1 << k for k in axis_kinds(shape)) | (1 << W_FACTOR)
    if flags & ~allowed or flags == 0:
        raise CodecError(f"mask payload: invalid factor flags {flags:#x} for shape {shape}")
    model = FactorModel(base=0, factors=[])
    if flags & (1 << W_FACTOR):
        if not has_context:
            raise CodecError("mask payload uses the |W0| context but no context was given")
        _need(data, pos, 2)
        (model.scale_code,) = struct.unpack_from("<H", data, pos)
        pos += 2
        if not scale_code_valid(model.scale_code):
            raise CodecError("mask payload: invalid |W0| bin scale")
    _need(data, pos, 2)
    (model.base,) = struct.unpack_from("<h", data, pos)
    pos += 2
    hists = []
    for kind in [k for k in range(W_FACTOR + 1) if flags & (1 << k)]:
        ngroups = _ngroups(kind, dims)
        _need(data, pos, 2)
        packed, nlev = data[pos], data[pos + 1]
        pos += 2
        if packed & 0x80 or not 1 <= nlev <= MAX_LEVELS:
            raise CodecError("mask payload: invalid factor parameters")
        counts = bool(packed & 0x40)
        if counts:
            hist = np.zeros(nlev, dtype=np.int64)
            for t in range(nlev):
                hist[t], pos = get_varint(data, pos, ngroups)
            if int(hist.sum()) != ngroups:
                raise CodecError("mask payload: level histogram does not match the shape")
        else:
            hist = np.ones(nlev, dtype=np.int64)
        empty = np.zeros(0, dtype=np.int32)
        model.factors.append(Factor(kind, (packed & 0x3F) + 1, nlev, empty, counts))
        hists.append(hist)
    return model, hists, pos


def encode_factor_model(model: FactorModel, flat: np.ndarray, shape, bins) -> bytes:
    """Header + ANS stream. Raises ValueError if a set entry would not be coded."""
    out = bytearray()
    write_header(out, model)
    w = BitWriter()
    for f in model.factors:
        write_levels(w, f)
    write_mask_bits(w, flat, class_keys(model, view_dims(shape), bins))
    return bytes(out) + w.to_bytes()

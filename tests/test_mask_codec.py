"""Mask codec (formats/mask-codec-v1.md): round trips, golden bytes, hostile payloads, and a
pure-Python transcription of the spec checked against the implementation."""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fzpack.codecs.mask import decode_mask, encode_mask, mask_entropy_bounds
from fzpack.codecs.mask_ans import TABLE
from fzpack.codecs.mask_models import Factor, FactorModel, encode_factor_model, weight_bins
from fzpack.errors import CodecError
from conftest import spec_varint

# ------------------------------------------------------------------------------------------
# Reference decoder: sections 2-6 of the spec in plain Python (no constriction, no numpy math).
# ------------------------------------------------------------------------------------------


def ref_table() -> list[int]:
    return [min(65535, max(1, math.floor(65536 / (1 + 2.0 ** (-(i - 128) / 8)) + 0.5)))
            for i in range(257)]


def ref_ratio(a: int, b: int) -> int:
    return min(65535, max(1, (a * 65536 + b // 2) // b))


class RefStream:
    def __init__(self, data: bytes):
        assert not data or data[-1] != 0
        data = data + b"\0" * (-len(data) % 4)
        self.stack = [int.from_bytes(data[j:j + 4], "little") for j in range(0, len(data), 4)]
        self.state = 0
        if self.stack:
            self.state = self.stack.pop()
            if self.stack:
                self.state = (self.state << 32) | self.stack.pop()

    def bit(self, m: int) -> int:
        p0 = (((65536 - m) * (2**24 - 2)) >> 16) + 1
        q = self.state & (2**24 - 1)
        if q < p0:
            b, self.state = 0, p0 * (self.state >> 24) + q
        else:
            b, self.state = 1, (2**24 - p0) * (self.state >> 24) + (q - p0)
        if self.state < 2**32 and self.stack:
            self.state = (self.state << 32) | self.stack.pop()
        return b

    def done(self) -> bool:
        return not self.stack and self.state == 0


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def ref_decode(payload: bytes, shape: tuple, count: int, context=None) -> list[int]:
    n = math.prod(shape)
    model = payload[0]
    if model == 0:
        return [1 if count == n else 0] * n
    if model == 3:
        return [(payload[1 + i // 8] >> (i % 8)) & 1 for i in range(n)]
    if model == 1:
        s = RefStream(payload[1:])
        out = [s.bit(ref_ratio(count, n)) for _ in range(n)]
        assert s.done()
        return out
    if model == 4:  # GAPS (section 6A)
        s = RefStream(payload[1:])
        a = [((n - count) << 32) // n]
        while a[-1] > 2**31 and len(a) <= 40:
            a.append((a[-1] * a[-1] + 2**31) >> 32)
        r = len(a) - 1
        mu, mlow = ref_ratio(a[r], 2**32), [ref_ratio(a[j], 2**32 + a[j]) for j in range(r)]
        out, prev = [0] * n, -1
        for _ in range(count):
            q = 0
            while s.bit(mu):
                q += 1
            low = 0
            for j in reversed(range(r)):
                low |= s.bit(mlow[j]) << j
            prev += 1 + q * 2**r + low
            out[prev] = 1
        assert s.done()
        return out
    assert model == 2
    dims = (n,) if len(shape) <= 1 else tuple(shape) if len(shape) == 2 else (
        shape[0], shape[1], math.prod(shape[2:]))
    flags, pos = payload[1], 2
    scale = None
    if flags & 8:
        code = int.from_bytes(payload[pos:pos + 2], "little")
        scale = f32((256 + (code & 0xFF)) * 2.0 ** ((code >> 8) - 136))
        pos += 2
    base = int.from_bytes(payload[pos:pos + 2], "little", signed=True)
    pos += 2
    factors = []
    for kind in range(4):
        if not flags & (1 << kind):
            continue
        packed, nlev = payload[pos], payload[pos + 1]
        pos += 2
        groups = 16 if kind == 3 else dims[kind]
        if packed & 0x40:
            hist = []
            for _ in range(nlev):
                v, pos = spec_varint(payload, pos)
                hist.append(v)
        else:
            hist = [1] * nlev
        factors.append([kind, (packed & 0x3F) + 1, nlev, groups, hist])
    s = RefStream(payload[pos:])
    for f in factors:
        kind, step, nlev, groups, hist = f
        levels, alive, ge = [0] * groups, list(range(groups)), sum(hist)
        for t in range(nlev - 1):
            gt = ge - hist[t]
            if gt == 0 or not alive:
                break
            if gt < ge:
                alive = [g for g in alive if s.bit(ref_ratio(gt, ge))]
            for g in alive:
                levels[g] = t + 1
            ge = gt
        f.append(levels)
    classes = []
    for i in range(n):
        idx = []
        for k in range(len(dims)):
            idx.append((i // math.prod(dims[k + 1:])) % dims[k])
        eta = base
        for kind, step, _, _, _, levels in factors:
            if kind == 3:
                t = f32(abs(f32(float(context.flat[i]))) * scale)
                g = 15 if (t != t or t >= 15) else int(t)
            else:
                g = idx[kind]
            eta += step * (levels[g] - 1) if levels[g] > 0 else -(2**20)
        classes.append(-1 if eta < -(2**19) else min(max(eta, 0), 256))
    table = ref_table()
    out = [0] * n
    for v in range(257):
        for i in range(n):
            if classes[i] == v:
                out[i] = s.bit(table[v])
    assert s.done()
    return out


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def structured_mask(shape, q, seed, with_w=True):
    """Rank-structured SNIP-like mask: row x column (x |w|) x noise saliency, top (1-q)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    rows, cols = shape[0], int(np.prod(shape[1:]))
    s = (rng.lognormal(0, 1.2, (rows, 1)) * rng.lognormal(0, 1.2, (1, cols))).reshape(shape)
    s = s * (np.abs(w) if with_w else 1.0) * rng.lognormal(0, 0.5, shape)
    k = max(1, int((1 - q) * s.size))
    thr = np.partition(s.ravel(), s.size - k)[s.size - k]
    return s >= thr, np.abs(w)


def roundtrip(mask, ctx=None):
    payload = encode_mask(mask, ctx)
    back = decode_mask(payload, mask.shape, int(np.count_nonzero(mask)), ctx)
    assert back.dtype == np.bool_ and back.shape == mask.shape
    assert np.array_equal(back, mask)
    return payload


# ------------------------------------------------------------------------------------------
# Spec consistency
# ------------------------------------------------------------------------------------------


def test_table_matches_spec_formula_and_hash():
    assert TABLE.tolist() == ref_table()
    digest = hashlib.sha256(np.asarray(TABLE, dtype="<u2").tobytes()).hexdigest()
    assert digest == "737ced7a88ce3688411f33c9829492791885a0d34a987f7de41277383ef9d762"
    # Robust to libm differences: no entry is near a rounding tie.
    for i in range(257):
        x = 65536 / (1 + 2.0 ** (-(i - 128) / 8))
        assert abs(x - math.floor(x) - 0.5) > 0.01


REF_CASES = [  # (shape, q, seed, use context): small enough for the pure-Python decoder
    ((30, 40), 0.8, 0, True), ((40, 50), 0.9, 0, False), ((10, 8, 3, 3), 0.8, 0, True),
    ((1200,), 0.8, 0, True), ((200,), 0.95, 1, False), ((20, 30), 0.97, 1, True),
    ((6, 9), 0.7, 1, False), ((4, 3, 2, 2), 0.7, 2, True),
]


def ref_case_payload(case):
    shape, q, seed, use_ctx = REF_CASES[case]
    mask, ctx = structured_mask(shape, q, seed=seed)
    ctx = ctx if use_ctx else None
    return roundtrip(mask, ctx), mask, ctx


@pytest.mark.parametrize("case", range(len(REF_CASES)))
def test_reference_decoder_agrees(case):
    payload, mask, ctx = ref_case_payload(case)
    ref = ref_decode(payload, mask.shape, int(mask.sum()), ctx)
    assert ref == mask.ravel().astype(int).tolist()


def test_reference_cases_cover_all_models():
    models = {ref_case_payload(c)[0][0] for c in range(len(REF_CASES))}
    assert models == {1, 2, 3}


def test_reference_decoder_on_forced_factor_model():
    payload, mask, ctx = golden_factor()
    expected = mask.ravel().astype(int).tolist()
    assert ref_decode(payload, mask.shape, int(mask.sum()), ctx) == expected


# ------------------------------------------------------------------------------------------
# Golden bytes
# ------------------------------------------------------------------------------------------


def golden_factor():
    ctx = np.arange(24, dtype=np.float32).reshape(4, 6) / np.float32(24)
    mask = np.zeros((4, 6), bool)
    mask[0, 5] = mask[2, 1] = mask[2, 4] = mask[3, 2] = mask[3, 4] = True
    model = FactorModel(base=120, scale_code=0x8400, factors=[
        Factor(0, 8, 3, np.array([2, 0, 1, 2], np.int32), True),
        Factor(1, 4, 3, np.array([1, 2, 2, 0, 1, 1], np.int32), False),
        Factor(3, 16, 4, np.array([0] * 3 + [1] * 3 + [2] * 3 + [3] * 7, np.int32), False),
    ])
    bins = weight_bins(ctx, np.float32(16.0))
    payload = bytes([2]) + encode_factor_model(model, mask.ravel(), mask.shape, bins)
    return payload, mask, ctx


def test_golden_iid():
    mask = np.zeros(64, bool)
    mask[[2, 30, 31, 50]] = True
    golden = bytes.fromhex("01c09e01d7e9")
    assert encode_mask(mask) == golden
    assert np.array_equal(decode_mask(golden, (64,), 4), mask)
    assert ref_decode(golden, (64,), 4) == mask.astype(int).tolist()


def test_golden_raw():
    mask = np.zeros(20, bool)
    mask[[1, 4, 5, 11, 17]] = True
    golden = bytes.fromhex("03320802")
    assert encode_mask(mask) == golden
    assert np.array_equal(decode_mask(golden, (20,), 5), mask)
    assert ref_decode(golden, (20,), 5) == mask.astype(int).tolist()
    with pytest.raises(CodecError):  # padding bits must be zero
        decode_mask(bytes.fromhex("03320812"), (20,), 5)
    with pytest.raises(CodecError):
        decode_mask(bytes.fromhex("0332080200"), (20,), 5)


def test_golden_const():
    assert encode_mask(np.zeros((3, 4), bool)) == b"\x00"
    assert encode_mask(np.ones((3, 4), bool)) == b"\x00"
    assert decode_mask(b"\x00", (3, 4), 12).all()
    assert not decode_mask(b"\x00", (3, 4), 0).any()


def test_golden_factor():
    payload, mask, ctx = golden_factor()
    golden = bytes.fromhex("020b00847800470301010203030f040011d21c74f058840e186503")
    assert payload == golden
    assert np.array_equal(decode_mask(golden, (4, 6), 5, ctx), mask)


# ------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(0, 9), min_size=0, max_size=4),
    density=st.sampled_from([0.0, 0.001, 0.05, 0.3, 0.5, 0.9, 1.0]),
    seed=st.integers(0, 2**32 - 1),
    ctx_kind=st.sampled_from(["none", "normal", "const", "nan"]),
)
def test_roundtrip_random(shape, density, seed, ctx_kind):
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    mask = rng.random(shape) < density
    ctx = None
    if ctx_kind == "normal":
        ctx = np.abs(rng.standard_normal(shape)).astype(np.float32)
    elif ctx_kind == "const":
        ctx = np.full(shape, 0.5, np.float32)
    elif ctx_kind == "nan":
        ctx = np.abs(rng.standard_normal(shape)).astype(np.float32)
        ctx.flat[:: 3] = np.nan
        if ctx.size > 1:
            ctx.flat[1] = np.inf
    payload = roundtrip(mask, ctx)
    bounds = mask_entropy_bounds(mask)
    # Never much worse than the i.i.d. bound (id byte + ANS slack), never above the raw bits.
    assert len(payload) <= bounds["iid_bits"] / 8 + 6 + 0.01 * bounds["iid_bits"] / 8
    assert len(payload) <= 1 + (mask.size + 7) // 8


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.sampled_from([(30, 40), (8, 4, 3, 3), (200,), (16, 50), (6, 5, 7)]),
    q=st.sampled_from([0.5, 0.9, 0.99]),
    seed=st.integers(0, 2**32 - 1),
    use_ctx=st.booleans(),
)
def test_roundtrip_structured(shape, q, seed, use_ctx):
    mask, ctx = structured_mask(shape, q, seed)
    roundtrip(mask, ctx if use_ctx else None)


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (1, 1), (5,), (2, 3, 1, 1)])
@pytest.mark.parametrize("fill", [False, True])
def test_edge_constant(shape, fill):
    mask = np.full(shape, fill, bool)
    assert roundtrip(mask) == b"\x00"
    ctx = np.ones(shape, np.float32)
    assert roundtrip(mask, ctx) == b"\x00"


def test_single_entry_and_integer_masks():
    m = np.zeros((400, 300), bool)
    m[123, 45] = True
    assert len(roundtrip(m)) <= 6
    ints = np.array([[0, 1, 1], [0, 0, 1]], dtype=np.int64)
    payload = encode_mask(ints)
    assert np.array_equal(decode_mask(payload, (2, 3), 3), ints.astype(bool))
    with pytest.raises(CodecError):
        encode_mask(np.array([0, 2, 1]))
    with pytest.raises(CodecError):
        encode_mask(np.array([0.0, 1.0]))
    with pytest.raises(CodecError):
        encode_mask(np.ones((2, 2), bool), np.ones((2, 3), np.float32))


def test_deterministic():
    mask, ctx = structured_mask((60, 80), 0.95, seed=3)
    assert encode_mask(mask, ctx) == encode_mask(mask.copy(), ctx.copy())
    assert encode_mask(mask) == encode_mask(mask.copy())


def test_structured_mask_beats_iid_bound():
    mask, ctx = structured_mask((200, 300), 0.99, seed=11)
    iid = mask_entropy_bounds(mask)["iid_bits"] / 8
    with_ctx = roundtrip(mask, ctx)
    without = roundtrip(mask)
    assert with_ctx[0] == 2 and without[0] == 2
    assert len(without) < 0.85 * iid
    assert len(with_ctx) < 0.7 * iid


def test_uniform_random_mask_near_iid_bound():
    rng = np.random.default_rng(1)
    mask = rng.random((300, 400)) < 0.01
    ctx = np.abs(rng.standard_normal(mask.shape)).astype(np.float32)
    iid = mask_entropy_bounds(mask)["iid_bits"] / 8
    assert len(roundtrip(mask, ctx)) <= iid * 1.002 + 6


def test_entropy_bounds():
    m = np.zeros((4, 5), bool)
    m[0, :] = True
    b = mask_entropy_bounds(m)
    assert b["n"] == 20 and b["k"] == 5
    assert b["iid_bits"] == pytest.approx(20 * -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)))
    assert b["row_bits"] == 0.0 and b["rowcol_bits"] == 0.0
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert b["col_bits"] == pytest.approx(5 * 4 * h)
    one_d = mask_entropy_bounds(np.array([True, False, False, True]))
    assert one_d["row_bits"] == one_d["col_bits"] == one_d["iid_bits"] == pytest.approx(4.0)


# ------------------------------------------------------------------------------------------
# Hostile payloads
# ------------------------------------------------------------------------------------------


def assert_rejected_or_exact(payload, shape, count, ctx=None):
    """A corrupted payload either fails with CodecError or yields a mask with `count` entries."""
    try:
        out = decode_mask(payload, shape, count, ctx)
    except CodecError as exc:
        assert "\n" not in str(exc)
        return
    assert out.shape == tuple(shape) and int(out.sum()) == count


def hostile_cases():
    mask, ctx = structured_mask((20, 30), 0.9, seed=5)
    yield encode_mask(mask, ctx), mask, ctx
    yield encode_mask(mask), mask, None
    small = np.zeros(50, bool)
    small[[3, 9, 20]] = True
    yield encode_mask(small), small, None
    payload, m, c = golden_factor()
    yield payload, m, c
    gaps = np.zeros(100, bool)
    gaps[[3, 17, 18, 60, 99]] = True
    yield bytes.fromhex("04f3a682954b0404"), gaps, None  # model 4 (GAPS), the spec's vector


@pytest.mark.parametrize("kernel", ["numpy", "compiled"])
@pytest.mark.parametrize("which", range(5))
def test_hostile_truncation_and_bitflips(which, kernel, monkeypatch):
    from fzpack.generator import compiled

    if kernel == "compiled" and compiled.unavailable_reason():
        pytest.skip("numba not installed")
    monkeypatch.setenv("FZPACK_KERNEL", kernel)
    payload, mask, ctx = list(hostile_cases())[which]
    count = int(mask.sum())
    for cut in range(len(payload)):
        assert_rejected_or_exact(payload[:cut], mask.shape, count, ctx)
    rng = np.random.default_rng(which)
    for _ in range(150):
        bad = bytearray(payload)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(bad)))
            bad[i] ^= 1 << int(rng.integers(8))
        assert_rejected_or_exact(bytes(bad), mask.shape, count, ctx)
    assert_rejected_or_exact(payload + b"\x01", mask.shape, count, ctx)
    assert_rejected_or_exact(payload + b"\x00", mask.shape, count, ctx)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=64), count=st.integers(0, 60),
       shape=st.sampled_from([(60,), (6, 10), (3, 4, 5)]), use_ctx=st.booleans())
def test_hostile_random_bytes(data, count, shape, use_ctx):
    ctx = np.linspace(0, 1, math.prod(shape), dtype=np.float32).reshape(shape) if use_ctx else None
    assert_rejected_or_exact(data, shape, count, ctx)
    assert_rejected_or_exact(b"\x02" + data, shape, count, ctx)
    assert_rejected_or_exact(b"\x04" + data, shape, count, ctx)


def test_hostile_arguments():
    good = encode_mask(np.array([True, False, False, True]))
    for args in [
        (good, (4,), 5), (good, (4,), -1), (good, (-4,), 2), (good, "abc", 2),
        (good, (4,), 2.0), ("01", (4,), 2), (7, (4,), 2), (b"", (4,), 2),
        (good, (2**20, 2**20), 2), (b"\x01" + b"\x7f" * 200, (4,), 2),
        (b"\x00\x00", (4,), 0), (b"\x00", (4,), 2), (b"\x09", (4,), 2),
        (b"\x03\x0f", (4,), 4), (b"\x03\x03", (4,), 1),
        (b"\x04", (4,), 0), (b"\x04\x01", (4,), 4), (b"\x04" + b"\x7f" * 500, (4,), 2),
        (b"\x05", (4,), 2),
    ]:
        with pytest.raises(CodecError):
            decode_mask(*args)


def test_hostile_context_and_header_limits():
    payload, mask, ctx = golden_factor()
    with pytest.raises(CodecError):
        decode_mask(payload, mask.shape, 5)  # needs the context
    with pytest.raises(CodecError):
        decode_mask(payload, mask.shape, 5, np.ones((6, 4), np.float32))
    with pytest.raises(CodecError):  # checked for every model, not only the one that uses it
        decode_mask(bytes.fromhex("01c09e01d7e9"), (64,), 4, np.ones(63, np.float32))
    with pytest.raises(CodecError):
        decode_mask(bytes.fromhex("01c09e01d7e9"), (64,), 4, np.array(["a"] * 64))
    # flags naming an axis the shape does not have (axis 2 of a 2-D view).
    with pytest.raises(CodecError):
        decode_mask(b"\x02\x04\x00\x00\x07\x02" + payload[-4:], mask.shape, 5, ctx)
    # invalid scale code (exponent byte 0) and a reserved bit in `packed`.
    with pytest.raises(CodecError):
        decode_mask(b"\x02\x08\x00\x00" + payload[6:], mask.shape, 5, ctx)
    bad = bytearray(payload)
    bad[6] |= 0x80
    with pytest.raises(CodecError):
        decode_mask(bytes(bad), mask.shape, 5, ctx)
    # a level histogram that does not sum to the number of groups
    bad = bytearray(payload)
    bad[8] = 2
    with pytest.raises(CodecError):
        decode_mask(bytes(bad), mask.shape, 5, ctx)
    # 255 uniform levels on a 1 x 2 mask exceed nothing, but a (4000, 1) view with 255 levels
    # per row does: the decoder must refuse before doing the work.
    heavy = b"\x02\x01\x00\x00" + bytes([0x00, 255]) + b"\x01"
    with pytest.raises(CodecError):
        decode_mask(heavy, (4000, 1), 3)


# ------------------------------------------------------------------------------------------
# The fast decoder path (entry codes, per-class scans, block-wise sorts) against the reference
# reader over class_keys, on random factor models; small chunk sizes reach every branch.
# ------------------------------------------------------------------------------------------


def _random_factor_case(rng: np.random.Generator, shape: tuple[int, ...], *, wide_levels: bool = False):
    """A random model-2 stream: (stream bytes, model, view dims, context, mask it encodes)."""
    from fzpack.codecs.mask_ans import BitWriter
    from fzpack.codecs.mask_models import axis_kinds, class_keys, code_for_scale, view_dims, write_mask_bits

    dims = view_dims(shape)
    kinds = axis_kinds(shape) + [3]
    chosen = kinds if wide_levels else sorted({k for k in kinds if rng.random() < 0.6} or {int(rng.choice(kinds))})
    factors = []
    for k in chosen:
        groups = 16 if k == 3 else dims[k]
        nlev = 255 if wide_levels else int(rng.integers(1, 6)) if rng.random() < 0.8 else int(rng.integers(1, 256))
        levels = rng.integers(1, nlev, groups) if nlev > 1 else np.zeros(groups, int)
        levels = np.where(rng.random(groups) < (0.02 if wide_levels else rng.choice([0.0, 0.3, 0.8])), 0, levels).astype(np.int32)
        step = int(rng.integers(30, 65)) if wide_levels else int(rng.integers(1, 65))
        factors.append(Factor(k, step, nlev, levels, True))
    base = (int(rng.integers(-32768, -500)) if wide_levels
            else int(rng.choice([rng.integers(-300, 300), rng.integers(-32768, 32768), 0, 256, -1])))
    n = math.prod(dims)
    ctx = (rng.standard_normal(n) * rng.choice([0.01, 1.0, 1e10])).astype(np.float32)
    if rng.random() < 0.3:
        for value, share in ((np.nan, 0.1), (np.inf, 0.05), (-np.inf, 0.05), (-0.0, 0.05)):
            ctx[rng.random(n) < share] = value
    finite = np.abs(ctx[np.isfinite(ctx)])
    code = code_for_scale(float(16 / (finite.max() + 1e-30))) if finite.size and rng.random() < 0.7 else None
    model = FactorModel(base=base, factors=factors, scale_code=code if code is not None else 0x8400)
    ctx = ctx.reshape(shape)
    keys = class_keys(model, dims, _bins(model, ctx))
    flat = (rng.random(n) < rng.choice([0.01, 0.3, 0.9])) & (keys >= 0)
    w = BitWriter()
    write_mask_bits(w, flat, keys)
    return w.to_bytes(), model, dims, ctx, flat


def _bins(model, ctx):
    from fzpack.codecs.mask_models import scale_from_code

    return weight_bins(ctx, scale_from_code(model.scale_code)) if any(f.kind == 3 for f in model.factors) else None


def random_factor_payloads(rng: np.random.Generator, shapes, per_shape: int):
    """Model-2 payloads of random FACTOR models, ``per_shape`` draws per shape, keeping 0 < k < numel.

    Yields (payload, shape, k, ctx, flat mask).
    """
    for shape in shapes:
        for _ in range(per_shape):
            _, model, _, ctx, flat = _random_factor_case(rng, shape)
            k = int(flat.sum())
            if k in (0, flat.size):
                continue
            yield bytes([2]) + encode_factor_model(model, flat, shape, _bins(model, ctx)), shape, k, ctx, flat


@pytest.mark.parametrize("seed", range(6))
def test_fast_mask_reader_matches_reference(seed, monkeypatch):
    import fzpack.codecs.mask_decode as mm
    import fzpack.codecs.mask_models as ref
    from fzpack.codecs.mask_ans import BitReader

    rng = np.random.default_rng(seed)
    for i in range(20):
        while True:  # up to 4 dims, at most a few thousand entries (tiny chunks loop in Python)
            shape = tuple(int(rng.integers(1, 30 if i % 2 else 9)) for _ in range(int(rng.integers(1, 5))))
            if math.prod(shape) <= 4000:
                break
        stream, model, dims, ctx, flat = _random_factor_case(rng, shape)
        r = BitReader(stream)
        assert np.array_equal(ref.read_mask_bits(r, ref.class_keys(model, dims, _bins(model, ctx))), flat)
        r.finish()
        for chunk, few in ((1 << 16, 8), (64, 8), (16, 0), (64, 1000), (8, 2)):
            monkeypatch.setattr(mm, "DECODE_CHUNK", chunk)
            monkeypatch.setattr(mm, "FEW_CLASSES", few)
            r = BitReader(stream)
            assert np.array_equal(mm.decode_mask_bits(r, model, dims, ctx), flat), (seed, i, chunk, few, dims)
            r.finish()
        # the codec bins |context|: the signed context and its absolute value decode alike
        r = BitReader(stream)
        assert np.array_equal(mm.decode_mask_bits(r, model, dims, np.abs(ctx)), flat)


def test_fast_mask_reader_with_too_many_sums_to_list(monkeypatch):
    """Four wide factors: the possible classes are not listed (sorted path, uint16 codes)."""
    import fzpack.codecs.mask_decode as mm
    from fzpack.codecs.mask_ans import BitReader

    rng = np.random.default_rng(3)
    stream, model, dims, ctx, flat = _random_factor_case(rng, (220, 200, 3), wide_levels=True)
    assert mm._possible_codes(model.base, model) is None
    for chunk in (1 << 16, 4096):
        monkeypatch.setattr(mm, "DECODE_CHUNK", chunk)
        r = BitReader(stream)
        assert np.array_equal(mm.decode_mask_bits(r, model, dims, ctx), flat)
        r.finish()


def test_entry_codes_equal_class_keys_plus_one():
    import fzpack.codecs.mask_decode as mm
    import fzpack.codecs.mask_models as ref

    rng = np.random.default_rng(5)
    for _ in range(40):
        shape = tuple(int(rng.integers(1, 12)) for _ in range(int(rng.integers(1, 5))))
        _, model, dims, ctx, _ = _random_factor_case(rng, shape)
        codes, possible = mm.entry_codes(model, dims, ctx)
        expected = ref.class_keys(model, dims, _bins(model, ctx)).astype(np.int64) + 1
        assert np.array_equal(codes.astype(np.int64), expected)
        if possible is not None:
            assert set(np.unique(expected).tolist()) <= set(possible.tolist())


def test_fast_mask_reader_when_low_bins_are_dead(monkeypatch):
    """Saliency-like models (|W0| bins below some b0 dead, most entries there) take the
    comparison pre-filter; it must decode exactly what the reference does."""
    import fzpack.codecs.mask_decode as mm
    import fzpack.codecs.mask_models as ref
    from fzpack.codecs.mask_ans import BitReader, BitWriter

    used = []
    prefilter = mm._dead_bins_prefilter

    def counting(*args):
        result = prefilter(*args)
        used.append(result is not None)
        return result

    monkeypatch.setattr(mm, "_dead_bins_prefilter", counting)
    rng = np.random.default_rng(11)
    for i in range(40):
        shape = tuple(int(rng.integers(1, 30)) for _ in range(int(rng.integers(1, 5))))
        dims = ref.view_dims(shape)
        n = math.prod(dims)
        factors = []
        if len(dims) >= 2 and i % 2:
            factors.append(Factor(0, int(rng.integers(1, 65)), 4, rng.integers(0, 4, dims[0]).astype(np.int32), True))
        b0 = int(rng.integers(1, 16))
        levels = np.zeros(16, np.int32)
        levels[b0:] = rng.integers(1, 6, 16 - b0)
        factors.append(Factor(3, int(rng.integers(1, 65)), 6, levels, True))
        model = FactorModel(base=int(rng.integers(-300, 300)), factors=factors, scale_code=0x8400)  # scale 16
        ctx = (rng.standard_normal(n) * rng.choice([0.02, 0.2])).astype(np.float32)
        if i % 3 == 0:
            ctx[rng.random(n) < 0.05], ctx[rng.random(n) < 0.03], ctx[rng.random(n) < 0.03] = np.nan, np.inf, -np.inf
        ctx = ctx.reshape(shape)
        keys = ref.class_keys(model, dims, _bins(model, ctx))
        flat = (rng.random(n) < 0.3) & (keys >= 0)
        w = BitWriter()
        ref.write_mask_bits(w, flat, keys)
        stream = w.to_bytes()
        for chunk in (1 << 16, 16):
            monkeypatch.setattr(mm, "DECODE_CHUNK", chunk)
            r = BitReader(stream)
            assert np.array_equal(mm.decode_mask_bits(r, model, dims, ctx), flat), (i, shape, b0)
            r.finish()
    assert sum(used) > 10


# ------------------------------------------------------------------------------------------
# Encoder shortcuts (spec section 8 is informative: they must not change what is chosen)
# ------------------------------------------------------------------------------------------


def test_factor_payload_never_shorter_than_the_skip_bound():
    """encode_mask skips fitting FACTOR when another model costs less than FACTOR_MIN_BYTES plus
    the decoder's visit of every entry: the bound must hold for every FACTOR payload, tiny ones too."""
    from fzpack.codecs.mask import FACTOR_MIN_BYTES

    rng = np.random.default_rng(5)
    lengths = [len(p) for p, *_ in random_factor_payloads(rng, [(1, 2), (2, 1), (2, 2), (1, 3, 1), (3,), (4, 4)], 200)]
    assert len(lengths) > 100 and min(lengths) >= FACTOR_MIN_BYTES


@pytest.mark.parametrize("case", ["sparse-iid", "sparse-structured", "dense-structured", "one-entry"])
def test_factor_skip_keeps_the_choice(case, monkeypatch):
    import fzpack.codecs.mask as M

    rng = np.random.default_rng(7)
    shape = (128, 64, 9)
    if case == "sparse-iid":
        mask, ctx = rng.random(shape) < 2e-4, np.abs(rng.standard_normal(shape)).astype(np.float32)
    elif case == "one-entry":
        mask, ctx = np.zeros(shape, bool), np.abs(rng.standard_normal(shape)).astype(np.float32)
        mask[3, 5, 7] = True
    else:
        mask, ctx = structured_mask(shape, 0.9995 if case == "sparse-structured" else 0.9, seed=2)
    fast = roundtrip(mask, ctx)
    monkeypatch.setattr(M, "FACTOR_MIN_BYTES", -math.inf)  # always fit FACTOR
    assert encode_mask(mask, ctx) == fast


def test_search_sample_fit_close_to_the_full_fit(monkeypatch):
    """Masks above SEARCH_CAP choose factors and steps on a small sample: at most 1 % larger than
    choosing them on the full fitting sample."""
    import fzpack.codecs.mask_fit as F

    mask, ctx = structured_mask((256, 64, 9), 0.95, seed=4)
    assert mask.size > F.SEARCH_CAP
    quick = roundtrip(mask, ctx)
    monkeypatch.setattr(F, "SEARCH_CAP", F.SAMPLE_CAP)
    full = roundtrip(mask, ctx)
    assert quick[0] == full[0] == 2
    assert len(quick) <= 1.01 * len(full)

"""Mask model 4 (GAPS) and the compiled decoders: spec vector, round trips, equality of every
decoding path (compiled, numpy + constriction, pure Python), the same rejections on hostile input,
and the encoder's decode-cost policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fzpack.codecs import mask as mask_codec
from fzpack.codecs.ans_reader import FastBitReader, SpecBitReader
from fzpack.codecs.mask import COST_MIN_ENTRIES, MODEL_GAPS, decode_mask, decode_mask_positions, encode_mask
from fzpack.codecs.mask_ans import BitReader, BitWriter
from fzpack.codecs.mask_gaps import decode_gaps, encode_gaps, gaps_params
from fzpack.errors import CodecError
from fzpack.generator import compiled
from test_mask_codec import random_factor_payloads, ref_decode, structured_mask

mk = pytest.importorskip("fzpack.codecs.mask_kernels", reason="numba not installed: the compiled decoders are absent")

GOLDEN = bytes.fromhex("04f3a682954b0404")
GOLDEN_POS = [3, 17, 18, 60, 99]


@pytest.fixture
def kernel():
    yield compiled.set_kernel
    compiled.set_kernel(None)


def decode_all_ways(payload: bytes, shape, count: int, ctx=None) -> list[object]:
    """decode_mask under the compiled and the numpy kernels: each result, or the CodecError's class."""
    out = []
    for k in ("compiled", "numpy"):
        compiled.set_kernel(k)
        try:
            mask, pos = decode_mask_positions(payload, shape, count, ctx)
            assert np.array_equal(pos, np.flatnonzero(mask)) and pos.size == count
            out.append(mask)
        except CodecError:
            out.append(CodecError)
    compiled.set_kernel(None)
    return out


def same(results: list[object]) -> bool:
    a, b = results
    if a is CodecError or b is CodecError:
        return a is b
    return np.array_equal(a, b)


def test_golden_gaps(kernel) -> None:
    mask = np.zeros(100, bool)
    mask[GOLDEN_POS] = True
    assert gaps_params(100, 5) == (4, 28844, [31928, 31089, 29418, 26138])
    assert bytes([MODEL_GAPS]) + encode_gaps(mask, 5) == GOLDEN
    for k in ("compiled", "numpy"):
        kernel(k)
        assert np.array_equal(decode_mask(GOLDEN, (100,), 5), mask)
    assert ref_decode(GOLDEN, (100,), 5) == mask.astype(int).tolist()
    out, pos = decode_gaps(GOLDEN[1:], 100, 5, None)  # pure-Python reader
    assert np.array_equal(out, mask) and pos.tolist() == GOLDEN_POS


def test_params_follow_the_spec() -> None:
    for n, k in [(2, 1), (10, 9), (100, 1), (10**6, 3), (2**34, 1), (2**34, 2**34 - 1), (7, 3)]:
        r, mu, mlow = gaps_params(n, k)
        a = [((n - k) << 32) // n]
        for _ in range(40):
            a.append((a[-1] * a[-1] + 2**31) >> 32)
        assert r == next((j for j in range(41) if a[j] <= 2**31), 40) and r <= 33
        assert len(mlow) == r and all(1 <= m <= 65535 for m in mlow + [mu])
        if 0 < k / n < 0.5:  # about log2(n / k) + 0.5 low bits
            assert abs(r - math.log2(math.log(2) * n / k)) <= 1.5


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 5000), data=st.data())
def test_gaps_round_trip_every_reader(n: int, data) -> None:
    k = data.draw(st.integers(1, n - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    mask = np.zeros(n, bool)
    mask[rng.choice(n, k, replace=False)] = True
    stream = encode_gaps(mask, k)
    for kernels in (mk, None):
        out, pos = decode_gaps(stream, n, k, kernels)
        assert np.array_equal(out, mask) and np.array_equal(pos, np.flatnonzero(mask))
    # about as long as an IID payload: n H(k / n) bits plus the coder's final state
    h = -(k * math.log2(k / n) + (n - k) * math.log2(1 - k / n)) / 8
    assert len(stream) <= h * 1.03 + 9


def test_readers_agree_on_random_streams() -> None:
    rng = np.random.default_rng(3)
    w, segs = BitWriter(), []
    for _ in range(60):
        m, c = int(rng.integers(1, 65536)), int(rng.integers(1, 300))
        bits = rng.random(c) < m / 65536
        w.add(bits, m)
        segs.append((c, m, bits))
    data = w.to_bytes()
    for reader in (BitReader(data), FastBitReader(data, mk), SpecBitReader(data)):
        assert all(np.array_equal(reader.read(c, m), b) for c, m, b in segs)
        reader.finish()
    for bad in (data[:-1] or b"\x01", data + b"\x07", b"\x05" + data):  # left over / wrong state
        results = []
        for reader in (BitReader, lambda d: FastBitReader(d, mk), SpecBitReader):
            try:
                r = reader(bad)
                got = [r.read(c, m) for c, m, _ in segs]
                r.finish()
                results.append(np.concatenate(got))
            except CodecError:
                results.append(CodecError)
        assert all((x is CodecError) == (results[0] is CodecError) for x in results)
    with pytest.raises(CodecError):
        FastBitReader(b"\x01\x00", mk)


def test_factor_fast_decoder_equals_numpy_on_random_models() -> None:
    from fzpack.codecs.mask_factor_fast import decode_factor_fast

    shapes = [(50, 40), (6, 7, 5, 5), (300,), (64, 16, 3, 3), (2, 700), (3, 70000)]
    tried = 0
    for payload, shape, k, ctx, flat in random_factor_payloads(np.random.default_rng(5), shapes, 6):
        results = decode_all_ways(payload, shape, k, ctx)
        assert same(results)
        if results[1] is CodecError:  # e.g. more level symbols than 16 n + 4096: refused by both
            continue
        out, pos = decode_factor_fast(payload, 1, shape, ctx, k, mk)
        assert np.array_equal(out, flat) and np.array_equal(pos, np.flatnonzero(flat))
        for wrong in (k - 1, k + 1):  # a count the payload does not hold: refused by both
            if 0 < wrong < flat.size:
                assert decode_all_ways(payload, shape, wrong, ctx) == [CodecError, CodecError]
        tried += 1
    assert tried >= 20


@pytest.mark.parametrize("case", range(8))
def test_every_model_decodes_alike_under_both_kernels(case) -> None:
    shape, q, seed, use_ctx = [((30, 40), 0.8, 0, True), ((40, 50), 0.9, 0, False), ((10, 8, 3, 3), 0.8, 0, True),
                               ((1200,), 0.8, 0, True), ((200,), 0.95, 1, False), ((20, 30), 0.97, 1, True),
                               ((300, 300), 0.9995, 1, False), ((512, 64, 3, 3), 0.9999, 2, True)][case]
    mask, ctx = structured_mask(shape, q, seed=seed)
    ctx = ctx if use_ctx else None
    payload = encode_mask(mask, ctx)
    a, b = decode_all_ways(payload, shape, int(mask.sum()), ctx)
    assert np.array_equal(a, mask) and np.array_equal(b, mask)


def test_hostile_gaps_payloads_are_refused_alike() -> None:
    rng = np.random.default_rng(11)
    mask = np.zeros(5000, bool)
    mask[rng.choice(5000, 40, replace=False)] = True
    good = bytes([MODEL_GAPS]) + encode_gaps(mask, 40)
    assert same(decode_all_ways(good, (5000,), 40))
    for i in range(300):
        bad = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            op = rng.integers(3)
            if op == 0 and len(bad) > 1:
                bad[int(rng.integers(1, len(bad)))] = int(rng.integers(256))
            elif op == 1 and len(bad) > 2:
                del bad[int(rng.integers(1, len(bad)))]
            else:
                bad.insert(int(rng.integers(1, len(bad) + 1)), int(rng.integers(256)))
        for count in (40, 39, 1):
            results = decode_all_ways(bytes(bad), (5000,), count)
            assert same(results), (i, count)
    for payload, n, count in [(b"\x04", 10, 0), (b"\x04", 10, 10), (b"\x04\xff\xff\xff\xff", 10, 3),
                              (b"\x04" + b"\xff" * 200, 100, 5), (b"\x04\x01\x00", 100, 5)]:
        for r in decode_all_ways(payload, (n,), count):
            assert r is CodecError


def test_unary_runaway_stops_at_the_end_of_the_tensor() -> None:
    # a stream of all-ones words keeps producing 1s: the quotient must stop at n, not loop
    payload = b"\x04" + b"\xff" * 64
    assert decode_all_ways(payload, (10**6,), 2) == [CodecError, CodecError]


def test_encoder_picks_gaps_for_large_sparse_masks_only(kernel) -> None:
    rng = np.random.default_rng(2)
    big = np.zeros((512, 64, 3, 3), bool)
    big.flat[rng.choice(big.size, 25, replace=False)] = True
    ctx = np.abs(rng.standard_normal(big.shape)).astype(np.float32)
    assert big.size >= COST_MIN_ENTRIES and encode_mask(big, ctx)[0] == MODEL_GAPS
    small = big.reshape(-1)[: COST_MIN_ENTRIES - 1].copy()
    small[:3] = True
    assert encode_mask(small)[0] != MODEL_GAPS  # below the threshold: models 0-3 only, as in codec 1.0
    structured, sctx = structured_mask((256, 64, 3, 3), 0.97, seed=4)
    assert encode_mask(structured, sctx)[0] == 2  # structure saves far more than the decoding charge


def test_decode_cost_policy_keeps_bytes_close(kernel) -> None:
    """The charge for decoding work trades at most a few bytes per large sparse tensor."""
    rng = np.random.default_rng(9)
    for k in (10, 100, 1000):
        m = np.zeros((256, 512), bool)
        m.flat[rng.choice(m.size, k, replace=False)] = True
        ctx = np.abs(rng.standard_normal(m.shape)).astype(np.float32)
        p = encode_mask(m, ctx)
        smallest = min(len(bytes([1]) + _iid(m)), len(p))
        assert len(p) <= smallest * 1.05 + 4


def _iid(m: np.ndarray) -> bytes:
    return mask_codec._encode_iid(m.ravel(), int(m.sum()))[1:]

"""Opt-in lossy value codecs (cast-fp16, cast-bf16, q8): bounds, marking, byte layouts, hostile payloads."""

from __future__ import annotations

import json
import struct

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings

import fzpack
from fzpack.codecs.lossy import decode_lossy, describe_lossy, encode_lossy
from fzpack.codecs.q8 import encode_q8
from fzpack.codecs.q8_index import encode_ans
from fzpack.codecs.values import CAST_BF16, CAST_FP16, Q8, decode_stream
from fzpack.container.file import read_container, write_container
from fzpack.container.layout import FROZEN, PLAIN, ROLE_INDEX, ROLE_VALUES, Header, StreamEntry, TensorEntry
from fzpack.equality import tree_differences
from fzpack.errors import CheckpointError, CodecError, FormatError
from fzpack.pack import pack
from fzpack.tensor_bits import bits_view, to_numpy_bytes
from fzpack.unpack import unpack
from fzpack_cli.main import cli
from conftest import rebuild_container, spec_varint

F32_EPS = 2.0**-23


@pytest.fixture(scope="module")
def packed(frozen_ckpt) -> dict:
    return {mode: pack(frozen_ckpt, mode) for mode in ("lossless", "fp16", "bf16", "q8")}


def _trained_errors(ckpt: dict, back: dict):
    for name, entry in ckpt["fzpack"]["tensors"].items():
        a, b, m = ckpt["state_dict"][name], back["state_dict"][name], entry["mask"]
        assert b.dtype == a.dtype and b.shape == a.shape
        # frozen entries still regenerate bit for bit: only trained values are lossy
        assert torch.equal(bits_view(a)[~m], bits_view(b)[~m])
        yield name, a[m].double(), b[m].double()


def test_default_is_lossless(frozen_ckpt, packed):
    assert packed["lossless"].lossy == {} and packed["lossless"].max_abs_error == 0.0
    assert tree_differences(frozen_ckpt, unpack(packed["lossless"].data).obj) == []
    assert fzpack.inspect(packed["lossless"].data)["lossy"] is False


@pytest.mark.parametrize("mode, rel", [("fp16", 2.0**-11), ("bf16", 2.0**-8)])
def test_cast_codecs_within_relative_bound(frozen_ckpt, packed, mode, rel):
    r = packed[mode]
    back = unpack(r.data).obj
    worst = 0.0
    for _, a, b in _trained_errors(frozen_ckpt, back):
        err = (a - b).abs()
        assert (err <= rel * a.abs() + 2.0**-25).all()
        worst = max(worst, float(err.max()))
    assert 0 < worst == pytest.approx(r.max_abs_error)
    for key in frozen_ckpt["state_dict"]:  # biases: lossless
        if key not in frozen_ckpt["fzpack"]["tensors"]:
            assert torch.equal(frozen_ckpt["state_dict"][key], back["state_dict"][key])
    assert tree_differences(frozen_ckpt["fzpack"], back["fzpack"]) == []  # masks and specs exact
    assert len(r.data) < len(packed["lossless"].data)


def test_q8_within_half_step_per_tensor(frozen_ckpt, packed):
    r = packed["q8"]
    h, payloads = read_container(r.data)
    back = unpack(r.data).obj
    steps = {}
    for i, s in enumerate(h.streams):
        if s.codec == Q8:
            d = describe_lossy(s.codec, payloads[i])
            (name,) = [t.name for t in h.tensors if t.kind == FROZEN and t.stream == i]  # one stream per tensor
            steps[name] = d
    assert set(steps) == set(frozen_ckpt["fzpack"]["tensors"])
    stream_of = {t.name: t.stream for t in h.tensors}
    for name, a, b in _trained_errors(frozen_ckpt, back):
        err = float((a - b).abs().max())
        if steps[name]["grid"] == "uniform":
            assert err <= steps[name]["step"] / 2 + 4 * F32_EPS * float(a.abs().max())
        assert err == r.lossy[stream_of[name]].max_abs_error  # compress measured what restore gives
    assert len(r.data) < len(packed["fp16"].data)


def test_inspect_marks_lossy(packed):
    for mode in ("fp16", "bf16", "q8"):
        info = fzpack.inspect(packed[mode].data)
        assert info["lossy"] is True and info["lossy_values"] == [mode]
        lossy_streams = [s for s in info["streams"] if "lossy" in s]
        assert lossy_streams and all(s["group"] == "trained" for s in lossy_streams)
        assert {s["codec"] for s in lossy_streams} == {{"fp16": "cast-fp16", "bf16": "cast-bf16", "q8": "q8"}[mode]}


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3000), st.floats(1e-6, 1e3), st.sampled_from(["normal", "laplace", "few"]), st.integers(0, 2**32 - 1))
def test_q8_bound_property(n, scale, kind, seed):
    rng = np.random.default_rng(seed)
    v = {"normal": rng.normal(0, scale, n), "laplace": rng.laplace(0, scale, n),
         "few": rng.choice([-scale, 0.0, scale / 3], n)}[kind].astype(np.float32)
    payload = encode_q8(v.astype(np.float64), torch.float32, 1)
    out = np.frombuffer(decode_lossy(Q8, payload, 4 * n, 4), dtype="<f4")
    err = np.abs(out.astype(np.float64) - v)
    d = describe_lossy(Q8, payload)
    if d["grid"] == "uniform":
        assert err.max() <= d["step"] / 2 + 4 * F32_EPS * np.abs(v).max()
    else:  # a codebook is only kept when it beats the 256-level grid's MSE
        lo, hi = float(v.min()), float(v.max())
        assert np.mean(err**2) <= ((hi - lo) / 255) ** 2 / 4 + 1e-30
    if kind == "few":  # three distinct values: an exact 3-entry codebook, unless a handful of values
        # code smaller on the uniform grid (its 8-byte header beats 12 bytes of levels; measured: n <= 5)
        assert err.max() == 0.0 or (d["grid"] == "uniform" and n <= 16)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_q8_other_dtypes_and_constants(dtype):
    v = (torch.linspace(-1, 1, 500) ** 3).to(dtype)
    codec, payload = encode_lossy("q8", to_numpy_bytes(v), dtype)
    back = torch.frombuffer(bytearray(decode_lossy(codec, payload, v.numel() * v.element_size(), v.element_size())), dtype=dtype)
    assert back.dtype == dtype and float((back.double() - v.double()).abs().max()) < 0.01
    const = torch.full((40,), 0.25, dtype=dtype)
    codec, payload = encode_lossy("q8", to_numpy_bytes(const), dtype)
    assert decode_lossy(codec, payload, 40 * const.element_size(), const.element_size()) == to_numpy_bytes(const)


def test_cast_codecs_leave_16_bit_tensors_alone():
    assert encode_lossy("fp16", to_numpy_bytes(torch.ones(4, dtype=torch.float16)), torch.float16) is None
    assert encode_lossy("bf16", to_numpy_bytes(torch.ones(4, dtype=torch.bfloat16)), torch.bfloat16) is None


def test_fp16_overflow_and_nan_are_refused(frozen_ckpt):
    ckpt = {**frozen_ckpt, "state_dict": dict(frozen_ckpt["state_dict"])}
    w = ckpt["state_dict"]["fc2.weight"].clone()
    m = frozen_ckpt["fzpack"]["tensors"]["fc2.weight"]["mask"]
    w[m.nonzero()[0].tolist()] = 70000.0
    ckpt["state_dict"]["fc2.weight"] = w
    with pytest.raises(CheckpointError, match="fc2.weight.*overflows fp16"):
        pack(ckpt, "fp16")
    assert pack(ckpt, "bf16").lossy  # bf16 has float32's range
    w[m.nonzero()[0].tolist()] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        pack(ckpt, "q8")
    with pytest.raises(CheckpointError, match="unknown values mode"):
        pack(frozen_ckpt, "int4")


# -- byte layouts (formats/fzpack-v1.md §3.2.1, §3.2.2) ----------------------------------------------

def test_known_answer_payloads():
    # cast-fp16: dtype float32 (1), inner codec raw (0), float16 bits of 1.0, -2.0, 0.5
    fp16 = bytes([1, 0]) + struct.pack("<3H", 0x3C00, 0xC000, 0x3800)
    assert np.frombuffer(decode_stream(CAST_FP16, fp16, 12, 4), "<f4").tolist() == [1.0, -2.0, 0.5]
    # cast-bf16: bfloat16 bits of 1.0 and -3.0 into float64 (4)
    bf16 = bytes([4, 0]) + struct.pack("<2H", 0x3F80, 0xC040)
    assert np.frombuffer(decode_stream(CAST_BF16, bf16, 16, 8), "<f8").tolist() == [1.0, -3.0]
    # q8: float32, uniform grid, K = 4 (lo -1, step 0.5), packed 2-bit indices 3,0,1,2 -> 0b10_01_00_11
    q8 = bytes([1, 0, 3]) + struct.pack("<ff", -1.0, 0.5) + bytes([0, 0b10010011])
    assert np.frombuffer(decode_stream(Q8, q8, 16, 4), "<f4").tolist() == [0.5, -1.0, -0.5, 0.0]
    # q8: codebook of 2 levels, ANS coder (1), bucket shift 0, histogram [2, 1], then the ANS bytes
    idx = np.array([1, 0, 0])
    ans = encode_ans(idx, 2, 0)
    assert ans[:3] == bytes([0, 2, 1])
    q8b = bytes([1, 1, 1]) + struct.pack("<2f", -0.25, 4.0) + bytes([1]) + ans
    assert np.frombuffer(decode_stream(Q8, q8b, 12, 4), "<f4").tolist() == [4.0, -0.25, -0.25]


def _reference_categorical_decode(data: bytes, weights: list[int], n: int) -> list[int]:
    """formats/fzpack-v1.md §3.2.2 transcribed: integer masses from the weights, then 24-bit ANS."""
    k, total = len(weights), sum(weights)
    s = float(2**24 - k) / float(total)
    left = [int(float(sum(weights[:i])) * s) + i for i in range(k)] + [2**24]
    words = [int.from_bytes((data + bytes(-len(data) % 4))[i : i + 4], "little") for i in range(0, len(data) + (-len(data) % 4), 4)]
    state = 0
    if words:
        state = words.pop()
    if words:
        state = (state << 32) | words.pop()
    out = []
    for _ in range(n):
        q = state & (2**24 - 1)
        i = next(j for j in range(k) if left[j] <= q < left[j + 1])
        state = (left[i + 1] - left[i]) * (state >> 24) + q - left[i]
        if state < 2**32 and words:
            state = (state << 32) | words.pop()
        out.append(i)
    assert not words and state == 0
    return out


def test_ans_index_model_matches_the_spec():
    rng = np.random.default_rng(5)
    idx = np.minimum(rng.geometric(0.05, 700) - 1, 40)
    for shift in (0, 2):
        payload = encode_ans(idx, 41, shift)
        buckets = -(-41 // (1 << shift))
        counts, pos = [], 1
        for _ in range(buckets):
            v, pos = spec_varint(payload, pos)
            counts.append(v)
        weights = [counts[i >> shift] for i in range(41)]
        assert _reference_categorical_decode(payload[pos:], weights, len(idx)) == idx.tolist()


# -- hostile payloads ------------------------------------------------------------------------------

def test_hostile_q8_payloads_are_codec_errors():
    good = bytes([1, 0, 3]) + struct.pack("<ff", -1.0, 0.5) + bytes([0, 0b10010011])
    bad = [
        good[:-1], good + b"\x00", bytes([1, 0, 3]) + struct.pack("<ff", float("nan"), 0.5) + good[11:],
        bytes([1, 0, 3]) + struct.pack("<ff", -1.0, -0.5) + good[11:], bytes([1, 7]) + good[2:],
        bytes([1, 1, 1]) + struct.pack("<2f", 1.0, 1.0) + bytes([0, 0b10]),  # levels not increasing
        bytes([1, 1, 1]) + struct.pack("<2f", 0.0, float("inf")) + bytes([0, 0b10]),
        bytes([1, 1, 2]) + struct.pack("<3f", 0.0, 1.0, 2.0) + bytes([0, 0b11]),  # index 3 >= K = 3
        bytes([1, 1, 1]) + struct.pack("<2f", 0.0, 1.0) + bytes([0, 0b10010]),  # padding bits set
        bytes([1, 1, 1]) + struct.pack("<2f", 0.0, 1.0) + bytes([9]),  # unknown index coder
        bytes([1, 1, 1]) + struct.pack("<2f", 0.0, 1.0) + bytes([1, 0, 3, 1, 0xAB]),  # histogram sums to 4, the stream holds 2
        bytes([1, 1, 0]) + struct.pack("<f", 0.0) + bytes([1, 0, 2]),  # ANS needs K >= 2
        bytes([1, 1, 1]) + struct.pack("<2f", 0.0, 1.0) + bytes([1, 9, 2]),  # bucket shift > 7
        bytes([9]) + good[1:], bytes([2]) + good[1:],  # unknown dtype; float16 in a 4-byte stream
        b"",
    ]
    for payload in bad:
        with pytest.raises(CodecError):
            decode_stream(Q8, payload, 8, 4)
    for n in range(len(good)):
        with pytest.raises(CodecError):
            decode_stream(Q8, good[:n], 16, 4)
    with pytest.raises(CodecError):  # index count must equal raw_length / itemsize
        decode_stream(Q8, good, 20, 4)
    with pytest.raises(CodecError):  # fp16 into float16 would not be a widening cast
        decode_stream(CAST_FP16, bytes([2, 0]) + b"\x00\x3c", 2, 2)
    with pytest.raises(CodecError, match="not finite"):
        decode_stream(CAST_FP16, bytes([1, 0]) + struct.pack("<H", 0x7C00), 4, 4)
    with pytest.raises(CodecError):
        decode_stream(CAST_BF16, bytes([1, 5]) + b"\x00\x00", 4, 4)


def test_truncated_lossy_payloads_anywhere(packed):
    h, payloads = read_container(packed["q8"].data)
    for i, s in enumerate(h.streams):
        if s.codec == Q8:
            p = bytes(payloads[i])
            for n in range(0, len(p), max(1, len(p) // 60)):
                with pytest.raises(CodecError):
                    decode_stream(s.codec, p[:n], s.raw_length, s.itemsize)


def test_lossy_codec_in_the_wrong_place_is_a_format_error(packed):
    data = packed["q8"].data

    def to_index(h, stored):
        i = next(i for i, s in enumerate(h.streams) if s.codec == Q8)
        h.streams[i].role = ROLE_INDEX
    with pytest.raises(FormatError):
        unpack(rebuild_container(data, to_index))
    # a q8 payload claiming float64 items for float32 tensors
    h = Header(streams=[StreamEntry(Q8, ROLE_VALUES, 4, 8, 0, 0)],
               tensors=[TensorEntry(name="x", dtype=torch.int32, shape=(2,), kind=PLAIN, stream=0)], tree=b'{"$t":0}')
    payload = bytes([1, 0, 0]) + struct.pack("<ff", 1.0, 0.0) + bytes([0])
    with pytest.raises(FormatError, match="decodes to torch.float32"):
        unpack(write_container(h, [payload]))
    h.tensors[0].dtype = torch.float32
    assert unpack(write_container(h, [payload])).tensors[0].tolist() == [1.0, 1.0]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_bit_flip_in_a_lossy_file_is_detected(packed, data):
    good = packed["q8"].data
    pos = data.draw(st.integers(0, len(good) - 1))
    bad = bytearray(good)
    bad[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(FormatError):
        unpack(bytes(bad))


# -- the command line --------------------------------------------------------------------------------

def test_cli_values_smoke(tmp_path, frozen_ckpt):
    pt = tmp_path / "model.pt"
    fzpack.checkpoint.save_checkpoint(frozen_ckpt, pt)
    run = CliRunner().invoke
    r = run(cli, ["compress", str(pt), "--values", "q8", "-o", str(tmp_path / "q8.fzp")])
    assert r.exit_code == 0 and "LOSSY" in r.output and "max abs error" in r.output, r.output
    rep = json.loads(run(cli, ["compress", str(pt), "--values", "fp16", "-o", str(tmp_path / "h.fzp"), "--json"]).output)
    assert rep["lossy"] is True and rep["values"] == "fp16" and 0 < rep["max_abs_error"] < 1e-3
    r = run(cli, ["inspect", str(tmp_path / "q8.fzp")])
    assert "lossy (q8 trained values)" in r.output and "q8" in r.output and "LOSSY uniform" in r.output
    r = run(cli, ["verify", str(tmp_path / "q8.fzp"), "--against", str(pt)])
    assert r.exit_code == 1 and "LOSSY" in r.output
    r = run(cli, ["verify", str(tmp_path / "q8.fzp"), "--against", str(pt), "--tolerance", "0.01"])
    assert r.exit_code == 0 and "within tolerance" in r.output, r.output
    r = run(cli, ["verify", str(tmp_path / "h.fzp"), "--against", str(pt), "--rtol", str(2.0**-11)])
    assert r.exit_code == 0, r.output
    r = run(cli, ["compress", "--help"])
    assert "biases" in r.output and "lossless" in r.output
    rep = json.loads(run(cli, ["compress", str(pt), "-o", str(tmp_path / "l.fzp"), "--json"]).output)
    assert rep["lossy"] is False and rep["values"] == "lossless"

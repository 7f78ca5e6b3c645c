"""restore(compress(x)) is x, bit for bit: convention checkpoints, generic objects, every dtype."""

from __future__ import annotations

import math
from pathlib import Path
from collections import OrderedDict

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import fzpack
from fzpack.container.layout import FLAG_DENSE, FLAG_MASK_FROM_SEED, FROZEN
from fzpack.equality import tree_differences
from fzpack.generator import generate, random_mask
from fzpack.pack import pack
from fzpack.unpack import unpack


def roundtrip(obj):
    res = pack(obj)
    back = unpack(res.data).obj
    assert tree_differences(obj, back) == []
    return res, back


def test_convention_checkpoint_roundtrips_and_is_small(frozen_ckpt):
    res, back = roundtrip(frozen_ckpt)
    assert res.frozen
    dense = sum(v.numel() for v in frozen_ckpt["state_dict"].values()) * 4
    assert len(res.data) < dense / 50
    for name, t in back["fzpack"]["tensors"].items():
        assert torch.equal(t["mask"], frozen_ckpt["fzpack"]["tensors"][name]["mask"])


def test_header_is_under_two_percent(frozen_ckpt):
    res = pack(frozen_ckpt)
    header = 20 + int.from_bytes(res.data[12:16], "little")
    assert header <= 0.02 * len(res.data), (header, len(res.data))


def test_file_api_roundtrip(tmp_path, frozen_ckpt):
    pt = tmp_path / "m.pt"
    fzpack.checkpoint.save_checkpoint(frozen_ckpt, pt)
    rep = fzpack.compress(pt)
    assert rep.output == str(tmp_path / "m.fzp") and rep.factor > 50
    assert sum(rep.breakdown.values()) == rep.output_bytes
    assert fzpack.verify(tmp_path / "m.fzp", against=pt).ok
    assert tree_differences(torch.load(pt, weights_only=True), fzpack.restore(tmp_path / "m.fzp")) == []


def test_edited_frozen_entries_are_kept_as_exceptions(frozen_ckpt):
    ck = {**frozen_ckpt, "state_dict": dict(frozen_ckpt["state_dict"])}
    w = ck["state_dict"]["fc1.weight"].clone()
    mask = frozen_ckpt["fzpack"]["tensors"]["fc1.weight"]["mask"]
    frozen_pos = torch.nonzero(~mask.reshape(-1))[:5, 0]
    w.view(-1)[frozen_pos] = torch.tensor([1.5, -0.0, float("nan"), float("inf"), 3.0])
    ck["state_dict"]["fc1.weight"] = w
    res, _ = roundtrip(ck)
    entry = next(t for t in res.header.tensors if t.name == "fc1.weight")
    assert entry.n_exceptions == 5 and not entry.flags & FLAG_DENSE


def test_fully_edited_tensor_is_stored_dense(frozen_ckpt):
    ck = {**frozen_ckpt, "state_dict": dict(frozen_ckpt["state_dict"])}
    ck["state_dict"]["conv1.weight"] = ck["state_dict"]["conv1.weight"] * 0.5  # decayed: nothing regenerates
    res, _ = roundtrip(ck)
    entry = next(t for t in res.header.tensors if t.name == "conv1.weight")
    assert entry.flags & FLAG_DENSE


def test_random_mask_costs_zero_bytes():
    seed, shape, k = 5, (64, 32), 20
    spec = fzpack.generator.InitSpec("normal", 0.0, 0.1)
    mask = random_mask(seed, "w", shape, k)
    w = generate(spec, seed, "w", shape)
    w[mask] = torch.linspace(-1, 1, k)
    ck = {"state_dict": {"w": w}, "fzpack": {"convention": 1, "seed": seed, "method": "random-mask", "tensors": {
        "w": {"init": {**spec.to_dict(), "scheme": "normal"}, "mask": mask}}}}
    res, _ = roundtrip(ck)
    assert res.header.tensors[0].flags & FLAG_MASK_FROM_SEED
    assert res.header.streams[0].role == 0  # no mask stream at all


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_frozen_tensors_of_other_float_dtypes(dtype):
    spec = fzpack.generator.InitSpec("uniform", -0.5, 0.5)
    w = generate(spec, 3, "layer.weight", (10, 7), dtype=dtype)
    mask = torch.zeros(10, 7, dtype=torch.bool)
    mask[2, 3] = mask[9, 6] = True
    w[mask] = torch.tensor([7.0, -7.0], dtype=dtype)
    ck = {"state_dict": {"layer.weight": w, "layer.bias": torch.ones(10, dtype=dtype)},
          "fzpack": {"convention": 1, "seed": 3, "tensors": {"layer.weight": {"init": {**spec.to_dict(), "scheme": ""}, "mask": mask}}}}
    res, _ = roundtrip(ck)
    assert res.header.tensors[0].kind == FROZEN and res.header.tensors[0].n_exceptions == 0


def test_generic_objects_roundtrip():
    sd = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).state_dict()
    tied = torch.randn(5, 3)
    obj = {
        "model": sd, "epoch": 3, "lr": 0.1, "neg_zero": -0.0, "nan": math.nan, "inf": -math.inf, "big": 2**70,
        "flags": [True, None, "x"], "tup": (1, (2.5, "y")), "int_keys": {0: "a", 1: {"$weird": 1}}, "b": b"\x00\xff",
        "ba": bytearray(b"ab"), "dtype": torch.float16, "size": torch.Size([2, 3]), "dev": torch.device("cpu"),
        "odict": OrderedDict([("z", 1), ("a", 2)]), "empty": torch.empty(0, 3), "scalar": torch.tensor(3.5),
        "ints": torch.arange(10), "bools": torch.tensor([True, False]), "c": torch.randn(3, dtype=torch.complex64),
        "u8": torch.arange(5, dtype=torch.uint8), "tied_a": tied, "tied_b": tied.view(5, 3), "same": [tied, tied],
        "noncontig": torch.randn(4, 6).t(), "f8": torch.randn(4).to(torch.float8_e4m3fn),
    }
    res, back = roundtrip(obj)
    assert not res.frozen and "no frozen structure" in res.notes[0]
    assert back["model"]._metadata == sd._metadata
    assert back["same"][0] is back["same"][1]


def test_invalid_fzpack_entry_falls_back_to_generic(frozen_ckpt):
    ck = {**frozen_ckpt, "fzpack": {**frozen_ckpt["fzpack"], "unexpected": 1}}
    res, _ = roundtrip(ck)
    assert not res.frozen and "not valid" in res.notes[0]


_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int8, torch.uint8, torch.bool]


@st.composite
def state_dicts(draw):
    n = draw(st.integers(0, 6))
    out = {}
    for i in range(n):
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
        dtype = draw(st.sampled_from(_DTYPES))
        nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
        raw = draw(st.binary(min_size=nbytes, max_size=nbytes))
        t = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if nbytes else torch.empty(0, dtype=torch.uint8)
        if dtype == torch.bool:
            t = (t & 1).bool()
        else:
            t = t.view(dtype)
        out[draw(st.text(min_size=1, max_size=12))] = t.reshape(shape)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state_dicts())
def test_random_state_dicts_roundtrip(sd):
    roundtrip(sd)
    roundtrip({"state_dict": sd, "step": 1})


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 40), cols=st.integers(1, 40), density=st.floats(0, 1),
       dist=st.sampled_from(["normal", "uniform", "pm", "zeros"]), edits=st.integers(0, 5))
def test_random_frozen_tensors_roundtrip(seed, rows, cols, density, dist, edits):
    params = {"normal": (0.0, 0.2), "uniform": (-0.3, 0.3), "pm": (0.1, 0.0), "zeros": (0.0, 0.0)}[dist]
    spec = fzpack.generator.InitSpec(dist, *params)
    w = generate(spec, seed, "w", (rows, cols))
    rng = np.random.default_rng(seed)
    mask = torch.from_numpy(rng.random((rows, cols)) < density)
    w[mask] = torch.from_numpy(rng.normal(size=int(mask.sum())).astype(np.float32))
    flat = w.view(-1)
    for p in rng.integers(0, rows * cols, size=edits):
        flat[p] = float(rng.normal())
    ck = {"state_dict": {"w": w}, "fzpack": {"convention": 1, "seed": seed, "tensors": {"w": {"init": {**spec.to_dict(), "scheme": dist}, "mask": mask}}}}
    roundtrip(ck)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_restore_on_cuda_is_bit_identical_to_cpu(frozen_ckpt):
    data = pack(frozen_ckpt).data
    on_gpu = fzpack.restore(data, device="cuda")
    assert all(t.device.type == "cuda" for t in on_gpu["state_dict"].values())
    moved = {**on_gpu, "state_dict": {k: v.cpu() for k, v in on_gpu["state_dict"].items()}}
    assert tree_differences(frozen_ckpt, moved) == []


def test_scaled_frozen_tensor_freezenet_wd():
    spec = fzpack.generator.InitSpec("normal", 0.0, 0.1)
    scale = float(np.float32(0.8731))
    mask = torch.zeros(6, 9, dtype=torch.bool)
    mask[0, :4] = True
    w = generate(spec, 11, "w", (6, 9)) * scale
    w[mask] = torch.tensor([0.5, 0.25, -1.0, 2.0])
    ck = {"state_dict": {"w": w}, "fzpack": {"convention": 1, "seed": 11, "method": "freezenet-wd", "tensors": {
        "w": {"init": {**spec.to_dict(), "scheme": "xavier_normal", "scale": scale}, "mask": mask}}}}
    res, back = roundtrip(ck)
    assert res.header.tensors[0].n_exceptions == 0 and not res.header.tensors[0].flags & FLAG_DENSE
    assert back["fzpack"]["tensors"]["w"]["init"]["scale"] == scale


def test_dct_frozen_tensor_round_trips_as_a_1_1_file():
    # generator dist 'dct' (spec 6.7) is container dist 5 (format 1.1), here with a coded mask and plain trained values
    spec = fzpack.generator.InitSpec("dct")
    w = generate(spec, 0, "w", (6, 4))
    mask = torch.zeros(6, 4, dtype=torch.bool)
    mask[0, 0] = mask[3, 2] = True
    w[mask] = torch.tensor([0.5, -0.25])
    ck = {"state_dict": {"w": w}, "fzpack": {"convention": 1, "seed": 0, "tensors": {
        "w": {"init": {**spec.to_dict(), "scheme": "dct"}, "mask": mask}}}}
    res, back = roundtrip(ck)
    assert res.header.tensors[0].init.dist == "dct" and res.data[9] == 1
    assert torch.equal(back["state_dict"]["w"], w)


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return type(obj)((k, _to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


VECTOR_DIR = Path(__file__).resolve().parent.parent / "formats" / "vectors"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(p.stem for p in VECTOR_DIR.glob("*.fzp")))
def test_every_vector_restores_on_cuda_as_on_cpu(name):
    """dct, per-row seeded masks, additive offsets, banks, q8: the GPU path gives the CPU's bits."""
    data = (VECTOR_DIR / f"{name}.fzp").read_bytes()
    on_gpu = fzpack.restore(data, device="cuda")
    sd = on_gpu.get("state_dict", {}) if isinstance(on_gpu, dict) else {}
    assert all(t.device.type == "cuda" for t in sd.values() if isinstance(t, torch.Tensor))
    assert tree_differences(fzpack.restore(data), _to_cpu(on_gpu)) == []

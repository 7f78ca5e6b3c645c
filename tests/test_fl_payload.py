"""fzpack.fl: bases and update payloads, for every registered method (formats/fl-update-v1.md).

Clients are the plain-torch ``Net`` of test_families (BatchNorm, a 1x1 conv, a classifier) in
each family's training form, trained a few steps on their own data from one shared base.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fzpack
from fzpack import fl
from fzpack.data.synthetic import make_synthetic
from fzpack.families import get_family, list_methods
from fzpack.freeze import frozen_state
from fzpack.models.registry import create_model
from fzpack.tensor_bits import bits_view
from test_families import Net, _config, _data


def _server(method: str) -> nn.Module:
    torch.manual_seed(0)  # Net's biases keep torch's default init
    model = Net()
    x, y = _data()
    return fzpack.freeze_(model, _config(method), batch=(x, y))


def _train(model: nn.Module, seed: int, steps: int = 2) -> nn.Module:
    """A client round: SGD with momentum and weight decay, the family's after-step hook, BN in train mode."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(32, 1, 12, 12, generator=g), torch.randint(0, 10, (32,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    state = frozen_state(model)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        get_family(state.method).after_step(model, state, lr=0.05, weight_decay=5e-4, momentum=0.9)
    return model


def _client(blob: bytes, seed: int) -> nn.Module:
    return _train(fzpack.load_into(Net(), blob, trainable=True), seed)


def _same_bits(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and torch.equal(bits_view(x), bits_view(y))
                                    for x, y in zip(a, b))


@pytest.fixture(scope="module", params=list_methods())
def run(request):
    """(method, base as the server made it, base as a client parsed it, a trained client)."""
    method = request.param
    server = _server(method)
    base = fl.Base.from_model(server)
    client_base = fl.Base.from_bytes(base.to_bytes())
    return method, base, client_base, _client(base.to_bytes(), seed=1)


def test_layout_is_what_the_family_trains(run):
    method, base, client_base, client = run
    assert client_base.fingerprint == base.fingerprint and client_base.layout == base.layout
    parts = {e.part for e in base.layout}
    family = get_family(method).name
    if family in ("freezenet", "dctps"):
        assert fl.PART_TRAINED in parts
    assert (fl.PART_SCALE in parts) == (method in ("freezenet-wd", "dctps"))
    if family == "lc" and method == "lc-frozen":
        assert "conv.weight" not in {e.name for e in base.layout}  # the spatial conv is fixed by the base
    trained = sum(p.numel() for p in client.parameters())
    buffers = sum(e.numel for e in base.layout) - trained
    # every parameter travels; besides them only BN statistics (+ WD's scales) - never an index or a frozen entry
    assert buffers == 2 * (8 + 6) + 2 + (3 if method == "freezenet-wd" else 0)


def test_round_trip_bit_for_bit(run):
    method, base, client_base, client = run
    blob = fl.encode_update(client, client_base, round=3, examples=32)
    upd = fl.decode_update(blob, base)
    assert (upd.round, upd.examples, upd.delta, upd.lossy) == (3, 32, False, False)
    assert _same_bits(upd.values, base.values_of(client))
    # the server's model of the base takes the values and computes what the client computes
    server = _server(method)
    fl.apply_update(server, upd)
    x, _ = _data(8)
    with torch.no_grad():
        assert torch.equal(server.eval()(x), client.eval()(x))
    assert _same_bits(base.values_of(server), upd.values)


def test_late_client_gets_base_and_values_never_dense_weights(run, tmp_path):
    method, base, client_base, client = run
    blob = fl.encode_update(client, client_base, round=7)
    x, _ = _data(8)
    with torch.no_grad():
        want = client.eval()(x)
    late = fzpack.load_into(Net(), base.to_bytes(), update=blob, trainable=True)
    assert _same_bits(base.values_of(late), base.values_of(client))
    plain = fzpack.load_into(Net(), base.to_bytes(), update=blob).eval()  # for inference: a plain module
    (tmp_path / "base.fzp").write_bytes(base.to_bytes())
    again = fzpack.load_into(Net(), tmp_path / "base.fzp", update=fl.decode_update(blob, base)).eval()
    fresh = fl.apply_update(fzpack.load_into(Net(), base.to_bytes()), fl.decode_update(blob, base))  # a plain module
    with torch.no_grad():
        for m in (late.eval(), plain, again, fresh.eval()):
            assert torch.equal(m(x), want)


def test_fingerprint_is_stable_across_rounds_and_names_the_structure(run):
    method, base, client_base, client = run
    assert fl.Base.from_model(client).fingerprint == base.fingerprint  # trained values are not in it
    config = _config(method)
    config.seed = 12  # another seed: other frozen weights (and masks, supports, banks)
    other = fzpack.freeze_(Net(), config, batch=_data())
    assert fl.Base.from_model(other).fingerprint != base.fingerprint
    assert fl.Base.from_model(_server(method), arch={"name": "net", "config": {}}).fingerprint != base.fingerprint


def test_deltas_are_exact_and_need_the_same_previous_values(run):
    method, base, client_base, client = run
    g0 = base.values()
    full = fl.encode_update(client, base)
    delta = fl.encode_update(client, base, delta_from=g0)
    upd = fl.decode_update(delta, client_base, previous=g0)
    assert upd.delta and _same_bits(upd.values, base.values_of(client))
    assert _same_bits(fl.decode_update(delta, client_base).values, upd.values)  # default previous: the base's values
    assert len(delta) < len(full) + 32 + 8  # XOR of nearby values has runs of zero bits
    later = fl.encode_update(base.values_of(client), base, delta_from=client)  # a delta against round-1 values
    with pytest.raises(fl.PayloadError, match="other previous values"):
        fl.decode_update(later, base)
    assert _same_bits(fl.decode_update(later, base, previous=upd).values, upd.values)


@pytest.mark.parametrize("mode, rel, floor", [("fp16", 2.0**-11, 2.0**-25), ("bf16", 2.0**-8, 2.0**-134)])
def test_cast_codecs_within_their_bounds(run, mode, rel, floor):
    method, base, client_base, client = run
    exact = base.values_of(client)
    upd = fl.decode_update(fl.encode_update(client, base, values=mode), base)
    assert upd.lossy and f"cast-{mode}" in upd.codecs  # labelled in the payload
    for e, a, b in zip(base.layout, exact, upd.values):
        if fl.payload._lossy_candidate(e):
            a64, b64 = a.double(), b.double()
            assert ((a64 - b64).abs() <= rel * a64.abs() + floor).all(), e.label
        else:  # biases, BatchNorm, scales, counters stay exact
            assert torch.equal(bits_view(a), bits_view(b)), e.label


def test_q8_within_half_a_step_and_lossy_deltas(run):
    method, base, client_base, client = run
    exact, g0 = base.values_of(client), base.values()
    for prev in (None, g0):
        blob = fl.encode_update(client, base, values="q8", delta_from=prev)
        upd = fl.decode_update(blob, base, previous=prev)
        for e, a, b, p in zip(base.layout, exact, upd.values, g0):
            if not fl.payload._lossy_candidate(e):
                assert torch.equal(bits_view(a), bits_view(b)), e.label
                continue
            d = (a.double() - p.double()) if prev is not None else a.double()
            step = float(d.max() - d.min()) / 255 if d.numel() else 0.0
            bound = step / 2 + 2.0**-21 * (float(d.abs().max()) if d.numel() else 0.0) + 2.0**-23 * (a.double().abs() + d.abs())
            assert ((a.double() - b.double()).abs() <= bound).all(), e.label


def test_payload_size_lenet5_caffe_freezenet_q099():
    """Issue 9: the uplink of a FreezeNet LeNet-5-Caffe at q = 0.99, lossless, is <= 1.05 x 4 B per trained value + 512 B."""
    x, y = make_synthetic(64, seed=1)
    x = x.float() / 255
    torch.manual_seed(0)
    model = fzpack.freeze_(create_model("lenet5-caffe"), fzpack.FreezeNetConfig(rate=0.99, seed=1), batch=(x, y))
    base = fl.Base.from_model(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    n = base.trained_count
    k = sum(e.numel for e in base.layout if e.part == fl.PART_TRAINED)
    assert (k, n) == (4305, 4305 + 580)  # floor(0.01 * 430,500) masked weights + the biases
    blob = fl.encode_update(model, base, round=1, examples=64)
    assert len(blob) <= 1.05 * 4 * n + 512
    # whatever the values: the writer never stores more than 4 B per float32, and the rest is header
    header = 20 + int.from_bytes(blob[12:16], "little")
    assert header <= 512 and len(blob) - header <= 4 * n
    assert len(fl.encode_update(model, base, values="fp16")) <= 2 * k + 4 * (n - k) + 512


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_late_client_holds_the_same_model(run):
    from fzpack.equality import tree_differences
    from fzpack.freeze import checkpoint_of

    method, base, client_base, client = run
    blob = fl.encode_update(client, base)
    gpu = fzpack.load_into(Net().cuda(), base.to_bytes(), update=blob, trainable=True)  # regenerated on the GPU
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    assert fl.encode_update(gpu, base) == blob
    assert tree_differences(checkpoint_of(client), checkpoint_of(gpu)) == []


def test_load_model_from_base_and_update():
    """A registry model: fzpack.load_model(base, update=payload) rebuilds it with the latest values (plain or trainable)."""
    x, y = make_synthetic(32, seed=2)
    x = x.float() / 255
    model = fzpack.freeze_(create_model("lenet5-caffe"), fzpack.DCTpSConfig(density=0.01, seed=3))
    base = fl.Base.from_model(model, arch={"name": "lenet5-caffe", "config": {}})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    blob = fl.encode_update(model, base, round=2, examples=32)
    with torch.no_grad():
        want = model.eval()(x)
        for m in (fzpack.load_model(base.to_bytes(), update=blob),
                  fzpack.load_model(base.to_bytes(), update=fl.decode_update(blob, base), frozen_layers=True)):
            assert torch.equal(m(x), want)
    numpy_values = [v.numpy() for v in base.values_of(model)]  # e.g. from Flower's ArrayRecord
    assert fl.encode_update(numpy_values, base, round=2, examples=32) == blob
    other = fl.Base.from_model(_server("dctps"))
    with pytest.raises(fzpack.FzpackError, match="belongs to another base"):
        fzpack.load_model(base.to_bytes(), update=fl.decode_update(fl.encode_update(other, other), other))
    with pytest.raises(fl.PayloadError, match="for another base"):
        fzpack.load_model(base.to_bytes(), update=fl.encode_update(other, other))

"""fzpack.fl.fedavg: FedAvg over trained values equals dense FedAvg restricted to them, bit for bit.

Three clients start from one base and train on their own data; the server averages their
decoded payloads. The references: dense FedAvg of the clients' whole training-form state dicts
(indices, momentum buffers and all), dense FedAvg of their *dense* checkpoints (every frozen
entry too), and a plain numpy transcription of the documented arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fzpack
from fzpack import fl
from fzpack.families import list_methods
from fzpack.freeze import checkpoint_of
from fzpack.layers import frozen_weights
from fzpack.tensor_bits import bits_view
from test_fl_payload import _client, _data, _server

WEIGHTS = [5, 3, 9]


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits_view(a), bits_view(b))


@pytest.fixture(scope="module", params=list_methods())
def federation(request):
    method = request.param
    base = fl.Base.from_model(_server(method))
    blob = base.to_bytes()
    clients = [_client(blob, seed) for seed in (1, 2, 3)]
    updates = [fl.decode_update(fl.encode_update(c, base, round=1, examples=w), base) for c, w in zip(clients, WEIGHTS)]
    return method, base, clients, updates


def _key(e: fl.LayoutEntry) -> str:
    """The training-form state-dict key holding a layout entry."""
    if e.part == fl.PART_PLAIN:
        return e.name
    return e.name[: -len("weight")] + "frozen_weight." + ("trained" if e.part == fl.PART_TRAINED else "scale")


def test_fedavg_equals_dense_fedavg_of_training_form_state_dicts(federation):
    method, base, clients, updates = federation
    avg = fl.fedavg(updates)
    assert all(not torch.equal(bits_view(a), bits_view(b)) for a, b in zip(updates[0].values, updates[1].values)
               if a.is_floating_point() and a.numel() > 8)  # the clients really differ
    dense = fl.dense_fedavg([c.state_dict() for c in clients], WEIGHTS)
    for e, v in zip(base.layout, avg):
        assert _bits_equal(v, dense[_key(e)]), e.label
    for name, fw in frozen_weights(clients[0]).items():  # the fixed part averages to itself
        assert torch.equal(dense[name[: -len("weight")] + "frozen_weight.index"], fw.index)


def test_fedavg_equals_dense_fedavg_of_the_dense_models(federation):
    """Averaging dense weights (what plain FedAvg ships) and averaging trained values give the same model.

    Bit for bit for every family whose trained entries are free values and whose frozen part is
    unscaled; FreezeNet-WD's frozen entries float32(R * s_i) and DCTpS's alpha * D + S are the
    same linear average rounded differently, so there the trained positions (WD) or the whole
    weight (DCTpS) agree to rounding.
    """
    method, base, clients, updates = federation
    avg = fl.fedavg(updates)
    dense = fl.dense_fedavg([checkpoint_of(c)["state_dict"] for c in clients], WEIGHTS)
    model = base.checkpoint_with(avg)["state_dict"]
    frozen = base.info.tensors
    for name, t in dense.items():
        ft = frozen.get(name)
        if ft is None or (ft.scale is None and ft.delta is None):
            assert _bits_equal(model[name], t), name
        elif ft.delta is None:  # FreezeNet-WD: trained positions exact
            assert _bits_equal(model[name][ft.mask], t[ft.mask]), name
            assert torch.allclose(model[name], t, rtol=2e-7, atol=0), name
        else:  # DCTpS
            assert torch.allclose(model[name], t, rtol=1e-6, atol=1e-7), name


def test_fedavg_follows_the_documented_arithmetic(federation):
    """A numpy transcription of formats/fl-update-v1.md section 7."""
    method, base, clients, updates = federation
    avg = fl.fedavg(updates)
    total = sum(WEIGHTS)
    for j, e in enumerate(base.layout):
        vs = [u.values[j].numpy() for u in updates]
        if e.dtype == torch.float32:
            acc = np.float64(WEIGHTS[0]) * vs[0].astype(np.float64)
            for w, v in zip(WEIGHTS[1:], vs[1:]):
                acc = acc + np.float64(w) * v.astype(np.float64)
            want = (acc / np.float64(total)).astype(np.float32)
            assert np.array_equal(want.view(np.uint32), avg[j].numpy().view(np.uint32)), e.label
        else:
            assert e.dtype == torch.int64  # num_batches_tracked
            q, r = divmod(sum(w * int(v) for w, v in zip(WEIGHTS, vs)), total)
            assert int(avg[j]) == q + (2 * r > total or (2 * r == total and q % 2 == 1)), e.label


def test_global_model_round_trip_and_downlink(federation):
    """Round 2: the server's downlink of the average lands bit for bit in a client and in a late joiner."""
    method, base, clients, updates = federation
    avg = fl.fedavg(updates)
    down = fl.encode_update(avg, base, round=2)
    for c in clients:
        fl.apply_update(c, fl.decode_update(down, base))
        assert all(_bits_equal(a, b) for a, b in zip(base.values_of(c), avg))
    late = fzpack.load_into(type(clients[0])(), base.to_bytes(), update=down, trainable=True)
    x, _ = _data(8)
    with torch.no_grad():
        assert torch.equal(late.eval()(x), clients[0].eval()(x))
    up = fl.encode_update(clients[1], base, round=2, delta_from=avg)  # next uplink as a delta from the global values
    assert all(_bits_equal(a, b) for a, b in zip(fl.decode_update(up, base, previous=avg).values, avg))


def test_integer_and_small_float_rules():
    a = fl.average([torch.tensor([1, 2, 3]), torch.tensor([2, 3, 4])], [1, 1])  # 1.5, 2.5, 3.5: ties to even
    assert a.tolist() == [2, 2, 4] and a.dtype == torch.int64
    assert fl.average([torch.tensor([-3]), torch.tensor([-4])], [1, 1]).tolist() == [-4]
    assert fl.average([torch.tensor([True]), torch.tensor([False]), torch.tensor([True])], [1, 1, 1]).tolist() == [True]
    assert fl.average([torch.tensor([2**62]), torch.tensor([2**62])], [2**40, 1]).tolist() == [2**62]  # no overflow
    z = fl.average([torch.tensor([-0.0]), torch.tensor([-0.0])], [1, 2])
    assert bits_view(z).tolist() == bits_view(torch.tensor([-0.0])).tolist()  # agreeing zeros keep their sign
    h = fl.average([torch.tensor([1.0], dtype=torch.bfloat16), torch.tensor([1.0078125], dtype=torch.bfloat16)], [1, 1])
    assert h.dtype == torch.bfloat16 and float(h) == 1.0  # 1.00390625 ties to even
    with pytest.raises(fzpack.FzpackError, match="add up to 0"):
        fl.average([torch.zeros(1)], [0])
    with pytest.raises(fzpack.FzpackError, match="integers"):
        fl.average([torch.zeros(1)], [1.5])
    with pytest.raises(fzpack.FzpackError, match="cannot average"):
        fl.average([torch.zeros(1), torch.zeros(2)], [1, 1])


def test_fedavg_refuses_mixed_bases(federation):
    method, base, clients, updates = federation
    other = fl.Base.from_model(_server("dense" if method != "dense" else "freezenet"))
    stranger = fl.decode_update(fl.encode_update(other.values(), other), other)
    with pytest.raises(fzpack.FzpackError):
        fl.fedavg([updates[0], stranger])
    with pytest.raises(fzpack.FzpackError, match="weights="):
        fl.fedavg([u.values for u in updates])
    assert all(_bits_equal(a, b) for a, b in zip(fl.fedavg([u.values for u in updates], WEIGHTS), fl.fedavg(updates)))

"""The family registry and the one-call path, parametrized over every registered method.

A model defined here with plain torch.nn (not in fzpack's registry, with BatchNorm and a 1x1
conv) goes through ``freeze_`` -> a few optimizer steps -> ``save`` / ``compress`` -> ``restore``
-> ``load_into`` a fresh module, for each method: the outputs must be identical, every tensor
bit for bit, and a module made trainable from the `.fzp` must hold the same parameters.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fzpack
from fzpack.container.file import read_container
from fzpack.container.layout import FLAG_ADDITIVE, FLAG_MASK_FROM_SEED, FLAG_MASK_PER_ROW, FROZEN
from fzpack.equality import tree_differences
from fzpack.families import family_for, get_family, list_families, list_methods
from fzpack.freeze import checkpoint_of, frozen_state
from fzpack.pack import pack


class Net(nn.Module):
    """Conv 3x3 -> BN -> ReLU -> conv 1x1 -> BN -> pool -> Linear: spatial and pointwise convs for LC."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.mix = nn.Conv2d(8, 6, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = F.relu(self.bn2(self.mix(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 4).flatten(1))


def _data(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g)


def _config(method: str):
    family = get_family(method)
    options = {"freezenet": {"rate": 0.9}, "dctps": {"density": 0.05}, "lc-frozen": {"share": "global"}}
    options = options.get(family.name, options.get(method, {}))
    return family.config(method, seed=11, **options)


def _trained(method: str, steps: int = 3) -> nn.Module:
    model = Net()
    x, y = _data()
    fzpack.freeze_(model, _config(method), batch=(x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_registry_lists_every_family_and_method():
    assert list_families() == ["freezenet", "dense", "dctps", "lc"]
    assert set(list_methods()) >= {"freezenet", "freezenet-wd", "freezenet-reinit", "snip", "random-mask", "dense", "dctps",
                                   "sparse-epl", "lc-frozen", "lc-learnable"}
    for method in list_methods():
        family = get_family(method)
        config = family.config(method)
        assert family_for(config) is family and family.method_of(config) == method
        assert type(config).from_dict(config.to_dict()) == config
    with pytest.raises(fzpack.FzpackError, match="did you mean"):
        get_family("dctp")


@pytest.mark.parametrize("method", list_methods())
def test_one_call_path_round_trips_a_model_outside_the_registry(tmp_path, method):
    model = _trained(method)
    x, _ = _data(8)
    with torch.no_grad():
        want = model(x)
    assert frozen_state(model).method == method
    fzpack.save(model, tmp_path / "model.pt")
    report = fzpack.compress(model, tmp_path / "model.fzp")
    assert report.frozen or method == "dense"
    ckpt = fzpack.checkpoint.load_checkpoint(tmp_path / "model.pt")
    assert tree_differences(ckpt, fzpack.restore(tmp_path / "model.fzp")) == []
    for src in (tmp_path / "model.fzp", tmp_path / "model.pt"):
        fresh = fzpack.load_into(Net(), src).eval()
        with torch.no_grad():
            assert torch.equal(fresh(x), want), src


@pytest.mark.parametrize("method", list_methods())
def test_training_continues_from_the_fzp(tmp_path, method):
    """load_into(trainable=True) rebuilds the family's training form: same parameters, same next step."""
    model = _trained(method)
    fzpack.compress(model, tmp_path / "model.fzp")
    again = fzpack.load_into(Net(), tmp_path / "model.fzp", trainable=True)
    a, b = dict(model.named_parameters()), dict(again.named_parameters())
    assert list(a) == list(b)
    assert all(torch.equal(a[n], b[n]) for n in a)
    x, y = _data()
    for m in (model, again):
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.05)  # no momentum: the optimizer state is not in a .fzp
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert tree_differences(checkpoint_of(model), checkpoint_of(again)) == []


def test_freeze_twice_or_without_batch_is_refused():
    model = Net()
    with pytest.raises(fzpack.FzpackError, match="needs one training batch"):
        fzpack.freeze_(model, fzpack.FreezeNetConfig())
    fzpack.freeze_(model, fzpack.DCTpSConfig(density=0.1))
    with pytest.raises(fzpack.FzpackError, match="already frozen"):
        fzpack.freeze_(model, fzpack.DCTpSConfig(density=0.1))
    with pytest.raises(fzpack.FzpackError, match="not the config of any registered family"):
        fzpack.freeze_(Net(), object())


def _frozen_entries(data: bytes) -> dict:
    h, _ = read_container(data)
    return {t.name: t for t in h.tensors if t.kind == FROZEN}


@pytest.mark.parametrize("allocation", ["epl", "epf"])
def test_dctps_file_stores_no_mask_and_alpha_and_offsets_exactly(allocation):
    model = Net()
    fzpack.freeze_(model, fzpack.DCTpSConfig(density=0.05, seed=3, allocation=allocation))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * (torch.arange(p.numel(), dtype=p.dtype) + 1).reshape(p.shape).sin())
    ckpt = checkpoint_of(model)
    data = pack(ckpt).data
    entries = _frozen_entries(data)
    assert set(entries) == {"conv.weight", "mix.weight", "fc.weight"}
    for t in entries.values():
        assert t.init.dist == "dct" and t.flags & FLAG_ADDITIVE and t.flags & FLAG_MASK_FROM_SEED
        assert bool(t.flags & FLAG_MASK_PER_ROW) == (allocation == "epf") or t.shape[0] == 1
        assert t.n_exceptions == 0
    restored = fzpack.restore(data)
    for name, entry in ckpt["fzpack"]["tensors"].items():
        got = restored["fzpack"]["tensors"][name]
        assert got["init"]["scale"] == entry["init"]["scale"] != 1.0  # alpha moved and came back exactly
        assert torch.equal(got["delta"], entry["delta"])
    assert data[9] == 1  # a 1.1 feature (dist dct, additive) makes the writer record minor version 1


def test_dctps_budget_allocation_counts():
    model = Net()
    state = get_family("dctps").transform_(model, fzpack.DCTpSConfig(density=0.05, seed=1))
    sizes = [72, 48, 960]
    k = math.floor(0.05 * sum(sizes))
    assert state.info["trained_weights"] == k and sum(state.info["layer_counts"]) == k
    assert state.info["layer_counts"] == [k // 3, k // 3, k - 2 * (k // 3)]
    model = Net()
    state = get_family("dctps").transform_(model, fzpack.DCTpSConfig(density=0.05, seed=1, allocation="epf"))
    masks = {n: ft.mask for n, ft in state.templates.items()}
    rows = [m.reshape(m.shape[0], -1).sum(1) for m in masks.values()]
    per = k // (8 + 6 + 10)
    assert all(int(r.min()) >= per and int(r.max()) <= per + 1 for r in rows)


def test_dctps_layer_is_alpha_dct_plus_sparse():
    model = Net()
    fzpack.freeze_(model, fzpack.DCTpSConfig(density=0.05, seed=2))
    fw = model.fc.frozen_weight
    with torch.no_grad():
        fw.scale.fill_(0.5)
        fw.trained.fill_(0.25)
        w = model.fc.weight
    d = fzpack.generator.generate(fzpack.generator.InitSpec("dct"), 2, "fc.weight", (10, 96))
    mask = torch.zeros(960, dtype=torch.bool)
    mask[fw.index] = True
    expect = (d * 0.5).reshape(-1)
    expect[mask] += 0.25
    assert torch.equal(w.reshape(-1), expect)


def test_sparse_epl_uses_the_dctps_support_with_a_standard_init():
    a, b = Net(), Net()
    fzpack.freeze_(a, fzpack.DCTpSConfig(density=0.05, seed=4))
    fzpack.freeze_(b, get_family("sparse-epl").config("sparse-epl", density=0.05, seed=4))
    for name in ("conv.weight", "mix.weight", "fc.weight"):
        fa = frozen_state(a).templates[name]
        fb = frozen_state(b).templates[name]
        assert torch.equal(fa.mask, fb.mask) and fb.spec.dist == "zeros"
    w = b.fc.weight.detach()
    assert (w != 0).sum() == int(frozen_state(b).templates["fc.weight"].mask.sum())


@pytest.mark.parametrize("share", ["global", "recycled"])
def test_lc_shared_slices_are_scaled_views_of_one_bank(share):
    model = Net()
    fzpack.freeze_(model, fzpack.LCConfig(seed=5, share=share, bank_fraction=4))
    state = frozen_state(model)
    (length,) = state.banks.values()
    assert length == (72 if share == "global" else 9 * math.ceil(72 / (4 * 9)))
    # the bank is the stream (seed, BANK, name): a scale-1 tensor of the bank's length is the bank itself
    spec = fzpack.generator.InitSpec("bank", 1.0, bank="lc.spatial")
    bank = fzpack.generator.generate(spec, 5, "any", (length,), banks=state.banks)
    w = model.conv.weight.detach().reshape(-1)
    s = torch.tensor(1 / math.sqrt(1 * 9), dtype=torch.float32)
    idx = torch.arange(72) % length
    assert torch.equal(w, bank[idx] * s)
    assert [n for n, p in model.named_parameters()] == ["conv.frozen_weight.trained", "bn.weight", "bn.bias", "mix.weight",
                                                         "bn2.weight", "bn2.bias", "fc.weight", "fc.bias"]
    h, _ = read_container(pack(checkpoint_of(model)).data)
    assert h.banks == [("lc.spatial", length)]


def test_lc_l1_and_magnitude_pruning_of_the_pointwise_convs():
    model = Net()
    fzpack.freeze_(model, fzpack.LCConfig(seed=6, l1=1e-3, prune_1x1=0.75))
    family, state = get_family("lc-frozen"), frozen_state(model)
    reg = family.regularizer(model, state)
    assert torch.allclose(reg, 1e-3 * model.mix.weight.abs().sum())
    w = model.mix.weight.detach().clone()
    family.finalize_(model, state)
    kept = model.mix.weight.detach()
    n = w.numel()
    assert int((kept != 0).sum()) == n - math.floor(0.75 * n) == state.info["kept_1x1"]
    assert state.info["pruned_1x1"] == math.floor(0.75 * n)
    assert kept[kept != 0].abs().min() >= w[kept == 0].abs().max()  # the largest magnitudes survive
    entries = _frozen_entries(pack(checkpoint_of(model)).data)
    assert entries["mix.weight"].init.dist == "zeros" and entries["mix.weight"].k == n - math.floor(0.75 * n)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", list_methods())
def test_load_into_on_cuda_regenerates_the_same_weights(tmp_path, method):
    model = _trained(method)
    fzpack.compress(model, tmp_path / "model.fzp")
    gpu = fzpack.load_into(Net().cuda(), tmp_path / "model.fzp", trainable=True)
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    assert tree_differences(checkpoint_of(model), checkpoint_of(gpu)) == []  # checkpoint_of copies to the CPU


def test_dctps_conv_layer_is_the_dct_of_each_channel_fastest_patch():
    """The D part of a DCTpS conv (alpha 1, S 0) is C[o, (kh*k + kw)*c_in + c] of the orthonormal DCT-II.

    Direct formula in float64, C[k, n] = s_k cos(pi (2n + 1) k / (2N)), N = max(patch, out):
    every entry within one float32 ulp (dctps.md section 4, the reference code's layout).
    """
    import numpy as np

    conv = nn.Sequential(nn.Conv2d(3, 5, 3, bias=False))  # patch 27 > out 5: N = 27
    fzpack.freeze_(conv, fzpack.DCTpSConfig(density=0.05, seed=1))
    fw = conv[0].frozen_weight
    with torch.no_grad():
        fw.trained.zero_()
        w = conv[0].weight.detach().double().numpy()
    out_c, c_in, k = 5, 3, 3
    n = max(c_in * k * k, out_c)
    got, want = np.empty((out_c, c_in * k * k)), np.empty((out_c, c_in * k * k))
    for o in range(out_c):
        s = np.sqrt((1.0 if o == 0 else 2.0) / n)
        for kh in range(k):
            for kw in range(k):
                for c in range(c_in):
                    p = (kh * k + kw) * c_in + c
                    got[o, p] = w[o, c, kh, kw]
                    want[o, p] = s * np.cos(np.pi * (2 * p + 1) * o / (2 * n))
    zero = np.abs(want) < 1e-12  # cos(pi/2) is 0, float64's formula gives ~1e-17: the generator gives +0.0
    assert np.all(got[zero] == 0)
    ulp = np.spacing(np.abs(want[~zero]).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(got[~zero] - want[~zero]) <= ulp)

"""Frozen-weight layers: same function as the plain model, K-sized parameters, exact frozen part."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fzpack
from fzpack.data.synthetic import make_synthetic
from fzpack.equality import tree_differences
from fzpack.families.freezenet import select_frozen as freeze_
from fzpack.generator import InitSpec, generate
from fzpack.layers import convert_, decay_frozen_, dense_state_dict, frozen_entries, frozen_weights
from fzpack.models.registry import create_model
from fzpack.pack import pack
from fzpack.unpack import unpack
from fzpack.tensor_bits import bits_view


def _setup(arch="lenet5-caffe", rate=0.99, seed=3):
    model = create_model(arch)
    x, y = make_synthetic(32, seed=1)
    x = x.float() / 255
    frozen = freeze_(model, (x, y), rate=rate, seed=seed)
    return model, frozen, x, y


@pytest.mark.parametrize("arch", ["lenet-300-100", "lenet5-caffe", "resnet20"])
def test_converted_model_computes_the_same_and_exports_the_same_state_dict(arch):
    model = create_model(arch)
    shape = (4, 3, 32, 32) if arch == "resnet20" else (4, 1, 28, 28)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    frozen = freeze_(model, (x, torch.arange(4) % 10), rate=0.99, seed=5)
    model.eval()
    before, plain_sd = model(x), model.state_dict()
    convert_(model, frozen, seed=5)
    assert torch.equal(model(x), before)
    assert tree_differences(dict(plain_sd), dense_state_dict(model)) == []
    k = sum(int(f.mask.sum()) for f in frozen.values())
    others = sum(v.numel() for n, v in dict(create_model(arch, device="meta").named_parameters()).items() if n not in frozen)
    assert sum(p.numel() for p in model.parameters()) == k + others


def test_training_touches_only_trained_entries_and_packs_without_exceptions():
    model, frozen, x, y = _setup()
    convert_(model, frozen, seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sd = dense_state_dict(model)
    for name, ft in frozen.items():
        regen = generate(ft.spec, 3, name, tuple(ft.mask.shape))
        assert torch.equal(bits_view(sd[name])[~ft.mask], bits_view(regen)[~ft.mask])
        assert not torch.equal(sd[name][ft.mask], regen[ft.mask])  # trained entries moved
    ck = fzpack.checkpoint.make_checkpoint(sd, frozen_entries(model, frozen), seed=3)
    res = pack(ck)
    assert all(t.n_exceptions == 0 and not t.flags & 1 for t in res.header.tensors if t.kind == 1)
    assert tree_differences(ck, unpack(res.data).obj) == []


def test_snip_zeros_frozen_part():
    model, frozen, x, y = _setup()
    snip = {n: fzpack.checkpoint.FrozenTensor(InitSpec("zeros"), f.mask, "zeros") for n, f in frozen.items()}
    convert_(model, snip, seed=3)
    for name, w in dense_state_dict(model).items():
        if name in snip:
            assert (w[~snip[name].mask] == 0).all() and int((w != 0).sum()) <= int(snip[name].mask.sum())


def test_freezenet_wd_scale_tracks_dense_sgd():
    """The exact scalar decay equals torch SGD applied to a dense copy of the frozen entries (fp32 rounding aside)."""
    model, frozen, x, y = _setup()
    convert_(model, frozen, seed=3, decay_frozen=True)
    fw = frozen_weights(model)["fc1.weight"]
    dense = fw.frozen.clone().requires_grad_(True)
    ref = torch.optim.SGD([dense], lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(20):
        dense.grad = torch.zeros_like(dense)
        ref.step()
        decay_frozen_(model, lr=0.1, weight_decay=5e-4, momentum=0.9)
    assert torch.allclose(fw.frozen * fw.scale, dense.detach(), rtol=1e-5, atol=0)
    ck = fzpack.checkpoint.make_checkpoint(dense_state_dict(model), frozen_entries(model, frozen), seed=3, method="freezenet-wd")
    res = pack(ck)
    assert all(t.n_exceptions == 0 and t.flags & 4 for t in res.header.tensors if t.kind == 1)
    assert tree_differences(ck, unpack(res.data).obj) == []
    assert ck["fzpack"]["tensors"]["fc1.weight"]["init"]["scale"] == float(np.float32(float(fw.scale)))


def test_optimizer_state_scales_with_k():
    model, frozen, x, y = _setup()
    convert_(model, frozen, seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    state = sum(s["momentum_buffer"].numel() for s in opt.state.values())
    assert state == sum(p.numel() for p in model.parameters()) < 6000  # 431,080 for the dense model


def test_load_model_from_pt_and_fzp(tmp_path):
    model, frozen, x, y = _setup()
    ck = fzpack.checkpoint.make_checkpoint(model, frozen, seed=3, arch={"name": "lenet5-caffe", "config": {}})
    fzpack.checkpoint.save_checkpoint(ck, tmp_path / "m.pt")
    fzpack.compress(tmp_path / "m.pt")
    model.eval()
    for src in (tmp_path / "m.pt", tmp_path / "m.fzp"):
        assert torch.equal(fzpack.load_model(src)(x), model(x))
        twin = fzpack.load_model(src, frozen_layers=True)
        assert torch.equal(twin(x), model(x))
        assert sum(p.numel() for p in twin.parameters()) < 6000


def test_load_model_adopts_file_tensors_but_never_aliases_a_callers_dict(tmp_path):
    model, frozen, x, _ = _setup()
    ck = fzpack.checkpoint.make_checkpoint(model, frozen, seed=3, arch={"name": "lenet5-caffe", "config": {}})
    fzpack.checkpoint.save_checkpoint(ck, tmp_path / "m.pt")
    fzpack.compress(tmp_path / "m.pt")
    loaded = fzpack.load_model(tmp_path / "m.fzp")
    assert not any(t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in loaded.parameters())
    from_dict = fzpack.load_model(ck)
    for name, p in from_dict.named_parameters():
        assert p.data_ptr() != ck["state_dict"][name].data_ptr()
        assert torch.equal(p, ck["state_dict"][name])

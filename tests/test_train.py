"""The trainer's methods: mask counts, the frozen-entry invariants after training, seeds, config."""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest
import torch

from fzpack.data.datasets import dataset_info
from fzpack.generator import InitSpec, generate, random_mask
from fzpack.families.saliency import num_trainable
from fzpack.models.registry import create_model
from fzpack.pack import pack
from fzpack.tensor_bits import bits_view
from fzpack.train import TrainConfig, TrainError, derive_seed, lr_at, train
from fzpack.families.freezenet import RANDOM_COUNTS_STREAM, random_masks
from fzpack.train.build import arch_config

FROZEN_METHODS = ["freezenet", "freezenet-wd", "freezenet-reinit", "snip", "random-mask"]


def small(**kw) -> TrainConfig:
    base = dict(arch="lenet-300-100", dataset="synthetic", synthetic_size=300, epochs=2, device="cpu", progress=False,
                seed=11, freeze_rate=0.999)
    base.update(kw)
    return TrainConfig(**base)


@functools.lru_cache(maxsize=None)
def trained(method: str, arch: str = "lenet-300-100"):
    return train(small(method=method, arch=arch))


def _regen(entry: dict, seed: int, name: str) -> torch.Tensor:
    init = entry["init"]
    spec = InitSpec.from_dict({k: v for k, v in init.items() if k not in ("scheme", "scale")})
    return generate(spec, seed, name, tuple(entry["mask"].shape))


@pytest.mark.parametrize("method", FROZEN_METHODS)
def test_mask_count_is_k_plus_one_per_empty_layer(method):
    ck = trained(method).checkpoint
    masks = {n: t["mask"] for n, t in ck["fzpack"]["tensors"].items()}
    total = sum(m.numel() for m in masks.values())
    k = num_trainable(total, 0.999)  # 266 of 266,200
    counts = [int(m.sum()) for m in masks.values()]
    assert all(c >= 1 for c in counts), counts  # the one-per-layer rule (FreezeNet section 4)
    rescued = sum(counts) - k
    assert 0 <= rescued <= sum(1 for c in counts if c == 1), counts
    assert trained(method).metrics["trained_weights"] == sum(counts)


def test_random_mask_counts_follow_a_uniform_global_draw():
    model = create_model("lenet-300-100")
    masks = random_masks(model, 0.99, seed=5)
    sizes = [m.numel() for m in masks.values()]
    k = num_trainable(sum(sizes), 0.99)
    expected = [int(p.sum()) for p in torch.split(random_mask(5, RANDOM_COUNTS_STREAM, (sum(sizes),), k), sizes)]
    assert [int(m.sum()) for m in masks.values()] == [max(c, 1) for c in expected]
    for (name, m), c in zip(masks.items(), expected):
        assert torch.equal(m, random_mask(5, name, tuple(m.shape), max(c, 1)))


@pytest.mark.parametrize("method", ["freezenet", "freezenet-reinit", "random-mask"])
def test_frozen_entries_equal_their_regeneration_bit_for_bit(method):
    ck = trained(method).checkpoint
    fz = ck["fzpack"]
    assert fz["method"] == method and fz["seed"] == 11
    moved = 0
    for name, entry in fz["tensors"].items():
        w, m = ck["state_dict"][name], entry["mask"]
        regen = _regen(entry, fz["seed"], name)
        assert torch.equal(bits_view(w)[~m], bits_view(regen)[~m])
        moved += int((w[m] != regen[m]).sum())
    assert moved > 0  # the trained entries did train
    res = pack(ck)  # compress sees the invariant: no exceptions, no dense fallback
    assert all(t.n_exceptions == 0 and not t.flags & 1 for t in res.header.tensors if t.kind == 1)


def test_reinit_uses_scheme_b_from_the_seed_and_a_derived_mask_seed():
    r = train(small(method="freezenet-reinit", init="xavier_normal", reinit="kaiming_uniform"))
    fz = r.checkpoint["fzpack"]
    assert {e["init"]["scheme"] for e in fz["tensors"].values()} == {"kaiming_uniform"}
    assert {e["init"]["dist"] for e in fz["tensors"].values()} == {"uniform"}
    assert fz["metadata"]["mask_seed"] == derive_seed(11, "reinit-mask") != 11
    plain = trained("freezenet").checkpoint["fzpack"]["tensors"]
    assert any(not torch.equal(plain[n]["mask"], e["mask"]) for n, e in fz["tensors"].items())


def test_snip_pruned_entries_are_zero():
    ck = trained("snip").checkpoint
    for name, entry in ck["fzpack"]["tensors"].items():
        assert entry["init"]["dist"] == "zeros" and entry["init"]["scheme"] == "zeros"
        w, m = ck["state_dict"][name], entry["mask"]
        assert torch.equal(bits_view(w)[~m], torch.zeros(int((~m).sum()), dtype=bits_view(w).dtype))


def test_freezenet_wd_frozen_entries_are_regeneration_times_scale():
    ck = trained("freezenet-wd").checkpoint
    for name, entry in ck["fzpack"]["tensors"].items():
        scale = entry["init"]["scale"]
        assert 0.99 < scale < 1.0  # 2 epochs x 3 steps of lr 0.1, wd 5e-4, momentum 0.9
        expected = _regen(entry, 11, name) * torch.tensor(scale, dtype=torch.float32)
        m = entry["mask"]
        assert torch.equal(bits_view(ck["state_dict"][name])[~m], bits_view(expected)[~m])


def test_dense_has_no_frozen_tensors_and_trains_everything():
    r = trained("dense")
    assert r.checkpoint["fzpack"]["tensors"] == {} and r.checkpoint["fzpack"]["method"] == "dense"
    assert r.metrics["q"] == 0.0 and r.metrics["trained_parameters"] == 266_610


def test_converted_model_parameters_are_only_trained_entries_biases():
    r = trained("freezenet")
    k = r.metrics["trained_weights"]
    assert sum(p.numel() for p in r.model.parameters()) == k + 410 == r.metrics["trained_parameters"]
    assert r.metrics["q_beta"] == pytest.approx(1 - (k + 410) / 266_610)


def test_training_leaves_every_global_rng_untouched():
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    train(small(method="freezenet", augment=True, epochs=1))  # augmentation draws random numbers too
    assert torch.equal(torch_state, torch.get_rng_state())
    assert all(np.array_equal(a, b) for a, b in zip(np_state, np.random.get_state()))
    assert py_state == random.getstate()


def test_same_seed_same_model_different_seed_different_model():
    a, b = train(small(epochs=1)).checkpoint, train(small(epochs=1)).checkpoint
    c = train(small(epochs=1, seed=12)).checkpoint
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert not torch.equal(a["state_dict"]["fc1.weight"], c["state_dict"]["fc1.weight"])


def test_metrics_record_the_run():
    m = trained("freezenet").metrics
    for key in ("test_accuracy", "val_accuracy", "q", "q_beta", "trained_parameters", "epochs_run", "best_epoch",
                "wall_time_s", "seeds", "config", "history"):
        assert key in m
    assert m["epochs_run"] == 2 and len(m["history"]) == 2 and m["steps"] == 6  # 270 images / batch 100
    assert m["seeds"]["data_seed"] == derive_seed(11, "data") and m["config"]["version"] == 2
    assert m["sizes"] == {"train": 270, "val": 30, "test": 500, "batch_size": 100, "steps_per_epoch": 3}


def test_early_stopping_with_patience_keeps_the_best_epoch():
    r = train(small(method="snip", freeze_rate=0.9999, epochs=6, patience=1))  # SNIP at q=0.9999 barely learns
    h = r.metrics["history"]
    assert r.metrics["epochs_run"] == len(h) <= 6
    best = max(range(len(h)), key=lambda i: (h[i]["val_accuracy"], -i))
    assert r.metrics["best_epoch"] == best + 1 and r.metrics["val_accuracy"] == h[best]["val_accuracy"]
    # Which epoch stops depends on float training (the CPU's kernels), the rule does not: with
    # patience 1 every epoch but the last improved, and the last did not unless it ran out of epochs.
    vals = [row["val_accuracy"] for row in h]
    improved = [v > max(vals[:i]) for i, v in enumerate(vals) if i]  # epoch i + 1 beat every earlier one
    assert len(h) >= 2 and all(improved[:-1]) and r.metrics["stopped_early"] == (not improved[-1])
    assert r.metrics["stopped_early"] or len(h) == 6
    # lr = 0 keeps the weights exactly, so the validation accuracy never improves: stop after epoch 2.
    still = train(small(method="snip", freeze_rate=0.9999, epochs=6, patience=1, lr=0.0)).metrics
    assert still["stopped_early"] and still["epochs_run"] == 2 and still["best_epoch"] == 1


def test_learning_rate_schedule():
    cfg = TrainConfig()
    assert lr_at(cfg, 24_999, 540, "mnist") == 0.1 and lr_at(cfg, 25_000, 540, "mnist") == pytest.approx(0.01)
    assert lr_at(cfg, 29_999, 390, "cifar10") == 0.1 and lr_at(cfg, 60_000, 390, "cifar10") == pytest.approx(0.001)
    ep = TrainConfig(lr_drop_epochs=(2, 4))
    assert [lr_at(ep, s, 10, "mnist") for s in (19, 20, 39, 40)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    assert lr_at(TrainConfig(lr_drop_steps=(5,)), 5, 10, "mnist") == pytest.approx(0.01)
    assert lr_at(TrainConfig(lr_drop_every=0), 10**6, 10, "mnist") == 0.1


def test_config_round_trip_and_versioning():
    cfg = TrainConfig(method="snip", lr_drop_epochs=(3,), arch_config={"conv_relu": True})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TrainError, match="newer"):
        TrainConfig.from_dict({**cfg.to_dict(), "version": 3})
    with pytest.raises(TrainError, match="unknown keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "lr_warmup": 5})
    for bad in (dict(method="prune"), dict(freeze_rate=1.0), dict(seed=-1), dict(init="orthogonal"), dict(val_split=1.0),
                dict(device="tpu")):
        with pytest.raises(TrainError):
            TrainConfig(**bad).validate()


def test_arch_config_follows_the_dataset():
    assert arch_config(TrainConfig(arch="resnet20"), dataset_info("cifar100")) == {"num_classes": 100, "in_channels": 3}
    cfg = arch_config(TrainConfig(arch="lenet5-caffe", arch_config={"conv_relu": True}), dataset_info("synthetic"))
    assert cfg == {"num_classes": 10, "in_channels": 1, "input_size": 28, "conv_relu": True}


def test_architecture_that_cannot_take_the_data_fails_clearly():
    with pytest.raises(TrainError, match="vgg16-d cannot run on synthetic"):
        train(small(method="dense", arch="vgg16-d", epochs=1))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp_dtype", ["float16", "bfloat16"])
def test_cuda_amp_training_keeps_the_frozen_invariant(tmp_path, amp_dtype):
    from fzpack.train.metrics import evaluate_file

    r = train(small(method="freezenet-wd", device="cuda", amp=True, amp_dtype=amp_dtype), tmp_path / "model.pt")
    assert r.metrics["device"].startswith("cuda")
    ck = r.checkpoint
    for name, entry in ck["fzpack"]["tensors"].items():  # the generator is bit-exact on CUDA and CPU
        expected = _regen(entry, 11, name) * torch.tensor(entry["init"]["scale"], dtype=torch.float32)
        m = entry["mask"]
        assert torch.equal(bits_view(ck["state_dict"][name])[~m], bits_view(expected)[~m])
    e = evaluate_file(tmp_path / "model.pt", device="cuda")  # evaluation is float32 in both
    assert abs(e["accuracy"] - r.metrics["test_accuracy"]) <= 2 / 500

"""`fzpack train` for the DCTpS and LC families: synthetic data, real files, the issue's size bounds."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save as st_save

import fzpack
from fzpack.container.file import read_container
from fzpack.container.layout import FLAG_MASK_FROM_SEED, FROZEN
from fzpack.equality import tree_differences
from fzpack.train import TrainConfig, train
from fzpack.train.metrics import evaluate_file
from fzpack_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _dense_safetensors_bytes(pt) -> int:
    sd = fzpack.checkpoint.load_checkpoint(pt)["state_dict"]
    return len(st_save({k: v.contiguous() for k, v in sd.items()}))


def test_cli_dctps_lenet5_at_density_0_001_is_under_1_percent(tmp_path):
    out = tmp_path / "model.pt"
    res = run("train", "--method", "dctps", "--arch", "lenet5-caffe", "--density", 0.001, "--dataset", "synthetic",
              "--synthetic-size", 300, "--epochs", 1, "--seed", 2, "--device", "cpu", "--json", "-o", out)
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    assert m["method"] == "dctps" and m["family"] == "dctps" and m["trained_weights"] == 430
    assert m["config"]["optimizer"] == "adam" and m["config"]["lr"] == 1e-3  # the family's paper defaults
    assert run("compress", out).exit_code == 0
    fzp = out.with_suffix(".fzp")
    assert fzp.stat().st_size <= 0.01 * _dense_safetensors_bytes(out)
    h, _ = read_container(fzp.read_bytes())
    frozen = [t for t in h.tensors if t.kind == FROZEN]
    assert len(frozen) == 4 and all(t.flags & FLAG_MASK_FROM_SEED and t.init.dist == "dct" for t in frozen)
    res = run("inspect", fzp)
    assert res.exit_code == 0 and "alpha" in res.output and "per-layer (EPL)" in res.output


def test_cli_lc_recycled_lcresnet_is_under_15_percent(tmp_path):
    out = tmp_path / "lc.pt"
    res = run("train", "--method", "lc-frozen", "--arch", "lcresnet-20-16x8", "--share", "recycled", "--bank-fraction", 16,
              "--dataset", "synthetic", "--synthetic-size", 200, "--max-steps", 2, "--batch-size", 16, "--val-split", 0,
              "--seed", 1, "--device", "cpu", "--json", "-o", out)
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    assert m["config"]["nesterov"] is True and m["config"]["lr_schedule"] == "cosine" and m["config"]["label_smoothing"] == 0.1
    assert run("compress", out).exit_code == 0
    fzp = out.with_suffix(".fzp")
    assert fzp.stat().st_size <= 0.15 * _dense_safetensors_bytes(out)
    h, _ = read_container(fzp.read_bytes())
    assert h.banks == [("lc.spatial", 64 * 512 * 9 // 16)]  # 1/16 of the largest spatial conv (64 -> 64x8, 3x3)
    res = run("inspect", fzp)
    assert res.exit_code == 0 and "bank 'lc.spatial'" in res.output and "frozen spatial convs" in res.output


@pytest.mark.parametrize("method, extra", [("dctps", {"density": 0.01, "allocation": "epf"}), ("sparse-epl", {"density": 0.01}),
                                           ("lc-frozen", {"share": "global", "l1": 1e-4, "prune_1x1": 0.5})])
def test_train_compress_restore_evaluate_keeps_the_accuracy(tmp_path, method, extra):
    arch = "lcresnet-20-16x1" if method.startswith("lc") else "lenet5-caffe"
    cfg = TrainConfig(method=method, arch=arch, dataset="synthetic", synthetic_size=200, epochs=1, max_steps=3,
                      batch_size=32, device="cpu", progress=False, seed=4, **extra)
    r = train(cfg, tmp_path / "model.pt")
    fzpack.compress(tmp_path / "model.pt", tmp_path / "model.fzp")
    assert tree_differences(fzpack.checkpoint.load_checkpoint(tmp_path / "model.pt"), fzpack.restore(tmp_path / "model.fzp")) == []
    for src in ("model.pt", "model.fzp"):
        e = evaluate_file(tmp_path / src)
        assert e["accuracy"] == r.metrics["test_accuracy"]
    if method == "lc-frozen":
        assert r.metrics["family_config"]["prune_1x1"] == 0.5
        pruned = fzpack.inspect(tmp_path / "model.fzp")
        zeros = [t for t in pruned["tensors"] if t["kind"] == "frozen" and t["init"]["dist"] == "zeros"]
        assert zeros and sum(t["trained"] for t in zeros) * 2 == pytest.approx(sum(t["numel"] for t in zeros), abs=2)


def test_resume_continues_a_dctps_run_bit_for_bit(tmp_path):
    base = dict(method="dctps", arch="lenet-300-100", dataset="synthetic", synthetic_size=200, density=0.02, device="cpu",
                progress=False, seed=5)
    full = train(TrainConfig(**base, epochs=2), tmp_path / "full" / "model.pt")
    train(TrainConfig(**base, epochs=1), tmp_path / "part" / "model.pt")
    resumed = train(TrainConfig(**base, epochs=2), tmp_path / "part" / "model.pt", resume=True)
    assert tree_differences(full.checkpoint["state_dict"], resumed.checkpoint["state_dict"]) == []
    alphas = {n: t["init"]["scale"] for n, t in resumed.checkpoint["fzpack"]["tensors"].items()}
    assert all(a != 1.0 for a in alphas.values())  # alpha trained (Adam moves every parameter)
    assert torch.equal(full.checkpoint["fzpack"]["tensors"]["fc1.weight"]["delta"],
                       resumed.checkpoint["fzpack"]["tensors"]["fc1.weight"]["delta"])


def test_family_options_reach_a_family_config_and_unknown_ones_are_refused():
    from fzpack.train.config import TrainError

    cfg = TrainConfig(method="dctps", density=0.01, family_options={"alpha": 0.5}).validate()
    assert cfg.family_config().alpha == 0.5
    with pytest.raises(TrainError, match="has no option nonsense"):
        TrainConfig(method="dctps", family_options={"nonsense": 1}).validate()
    res = run("train", "--method", "dctps", "--family-option", "alpha=2.5", "--family-option", "nonsense", "--dataset",
              "synthetic", "-o", "x.pt")
    assert res.exit_code != 0

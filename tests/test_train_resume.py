"""Resumable runs: 2 epochs in one go == 1 epoch + resume for 1, bit for bit, on the CPU."""

from __future__ import annotations

import pytest
import torch

from fzpack.checkpoint import load_checkpoint
from fzpack.equality import tree_differences
from fzpack.train import TrainConfig, TrainError, train
from fzpack.train.checkpoints import resume_path


def cfg(method: str, epochs: int, **kw) -> TrainConfig:
    # keep_best=False: compare the weights after epoch 2, not an earlier best epoch.
    base = dict(method=method, arch="lenet5-caffe", dataset="synthetic", synthetic_size=300, epochs=epochs, device="cpu",
                progress=False, seed=21, keep_best=False, lr_drop_epochs=(1,), augment=True)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", ["freezenet-wd", "snip"])
def test_resume_continues_bit_identically(tmp_path, method):
    whole = train(cfg(method, 2), tmp_path / "a" / "model.pt")
    first = train(cfg(method, 1), tmp_path / "b" / "model.pt")
    assert first.resume_file == resume_path(tmp_path / "b" / "model.pt") and first.resume_file.exists()
    lines: list[str] = []
    resumed = train(cfg(method, 2), tmp_path / "b" / "model.pt", resume=True, log=lines.append)
    assert any("resumed from" in line and "after epoch 1" in line for line in lines)
    assert tree_differences(whole.checkpoint["state_dict"], resumed.checkpoint["state_dict"]) == []
    assert tree_differences(whole.checkpoint["fzpack"]["tensors"], resumed.checkpoint["fzpack"]["tensors"]) == []  # WD scale too
    a = load_checkpoint(tmp_path / "a" / "model.resume.pt")["train"]
    b = load_checkpoint(tmp_path / "b" / "model.resume.pt")["train"]
    assert tree_differences(a["model"], b["model"]) == [] and tree_differences(a["optimizer"], b["optimizer"]) == []
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in whole.metrics["history"]]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.metrics["history"]]
    assert resumed.metrics["history"][1]["lr"] == pytest.approx(0.01)  # the drop at epoch 1 survived the resume


def test_resume_checkpoint_is_a_convention_checkpoint_with_training_state(tmp_path):
    train(cfg("freezenet", 1), tmp_path / "model.pt")
    ck = load_checkpoint(tmp_path / "model.resume.pt")  # weights_only load
    assert set(ck) == {"state_dict", "fzpack", "train"}
    assert set(ck["train"]) >= {"config", "model", "optimizer", "loop", "version"}
    assert ck["train"]["loop"]["epoch"] == 1 and ck["train"]["config"]["seed"] == 21
    final = load_checkpoint(tmp_path / "model.pt")
    assert set(final) == {"state_dict", "fzpack"}  # the final model carries no optimizer state


def test_resume_refuses_a_config_that_changes_the_run(tmp_path):
    train(cfg("freezenet", 1), tmp_path / "model.pt")
    with pytest.raises(TrainError, match="different lr"):
        train(cfg("freezenet", 2, lr=0.05), tmp_path / "model.pt", resume=True)
    more = train(cfg("freezenet", 2, patience=3), tmp_path / "model.pt", resume=True)  # epochs/patience may change
    assert more.metrics["epochs_run"] == 2


def test_resume_without_a_file_starts_from_scratch(tmp_path):
    lines: list[str] = []
    r = train(cfg("freezenet", 1), tmp_path / "model.pt", resume=True, log=lines.append)
    assert r.metrics["epochs_run"] == 1 and any("starting from scratch" in line for line in lines)
    assert torch.equal(r.checkpoint["state_dict"]["fc2.bias"], train(cfg("freezenet", 1)).checkpoint["state_dict"]["fc2.bias"])

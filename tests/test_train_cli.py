"""train -> compress -> restore -> evaluate, through the API and through `fzpack train` / `fzpack evaluate`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import fzpack
from fzpack.equality import tree_differences
from fzpack.train import TrainConfig, train
from fzpack.train.metrics import evaluate_file
from fzpack_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("method", ["freezenet-wd", "snip", "dense"])
def test_train_compress_restore_evaluate_keeps_the_accuracy(tmp_path, method):
    cfg = TrainConfig(method=method, arch="lenet-300-100", dataset="synthetic", synthetic_size=300, epochs=2,
                      device="cpu", progress=False, seed=9)
    r = train(cfg, tmp_path / "model.pt")
    assert r.metrics_path == tmp_path / "metrics.json"
    saved = json.loads(r.metrics_path.read_text())
    assert saved["test_accuracy"] == r.metrics["test_accuracy"] and saved["method"] == method
    fzpack.compress(tmp_path / "model.pt", tmp_path / "model.fzp")
    assert tree_differences(fzpack.checkpoint.load_checkpoint(tmp_path / "model.pt"), fzpack.restore(tmp_path / "model.fzp")) == []
    for src in ("model.pt", "model.fzp"):
        e = evaluate_file(tmp_path / src)  # data set and synthetic task read from the file's metadata
        assert e["dataset"] == "synthetic" and e["n"] == 500
        assert e["accuracy"] == r.metrics["test_accuracy"] and e["loss"] == pytest.approx(r.metrics["test_loss"], abs=1e-6)


def test_cli_train_and_evaluate_json(tmp_path):
    out = tmp_path / "run" / "model.pt"
    res = run("train", "--method", "freezenet", "--arch", "lenet5-caffe", "--dataset", "synthetic", "--synthetic-size", 300,
              "--freeze-rate", 0.99, "--epochs", 1, "--seed", 3, "--device", "cpu", "--val-split", 0.1, "--json", "-o", out)
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    assert m["method"] == "freezenet" and m["q"] == pytest.approx(0.99) and m["trained_weights"] >= 4305
    assert m["output"] == str(out) and out.exists() and (out.parent / "metrics.json").exists()
    assert run("compress", out).exit_code == 0
    for target in (out, out.with_suffix(".fzp")):
        res = run("evaluate", target, "--json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["accuracy"] == m["test_accuracy"]
    res = run("evaluate", out.with_suffix(".fzp"), "--dataset", "synthetic")
    assert res.exit_code == 0 and f"accuracy {m['test_accuracy']:.4f}" in res.output


def test_cli_train_text_output_and_resume(tmp_path):
    out = tmp_path / "m.pt"
    args = ("train", "--method", "snip", "--arch", "lenet-300-100", "--dataset", "synthetic", "--synthetic-size", 200,
            "--device", "cpu", "--no-progress", "-o", out)
    res = run(*args, "--epochs", 1)
    assert res.exit_code == 0, res.output
    assert "snip lenet-300-100 on synthetic" in res.output and "test accuracy" in res.output
    res = run(*args, "--epochs", 2, "--resume")
    assert res.exit_code == 0 and "2 epochs" in res.output


def test_cli_errors_are_one_line(tmp_path):
    res = run("train", "--method", "dense", "--arch", "vgg16-d", "--dataset", "synthetic", "--epochs", 1, "--device", "cpu",
              "--json", "-o", tmp_path / "v.pt")
    assert res.exit_code == 1 and "cannot run on synthetic" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "v.pt").exists()
    res = run("evaluate", tmp_path / "missing.fzp")
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    res = run("train", "--lr-drop-epochs", "3,x", "-o", tmp_path / "w.pt")
    assert res.exit_code == 1 and "comma-separated" in res.output


def test_help_has_examples():
    for cmd in ("train", "evaluate"):
        res = run(cmd, "--help")
        assert res.exit_code == 0 and "Example" in res.output


def _runner() -> CliRunner:
    import inspect

    # click < 8.2 mixes stderr into the output unless told not to; 8.2+ always keeps it apart
    return CliRunner(mix_stderr=False) if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters else CliRunner()


def test_logs_get_one_line_per_epoch_and_no_bar_frames(tmp_path):
    """stderr that is not a terminal (CI, > log.txt): plain epoch lines, no carriage-return frames."""
    args = [str(a) for a in ("train", "--method", "freezenet", "--arch", "lenet-300-100", "--dataset", "synthetic",
                             "--synthetic-size", 300, "--epochs", 2, "--device", "cpu", "-o", tmp_path / "m.pt")]
    res = _runner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "\r" not in res.stderr and res.stderr.count("epoch 1/2:") == 1 and res.stderr.count("epoch 2/2:") == 1
    forced = _runner().invoke(cli, args + ["--progress"], catch_exceptions=False)
    assert "\r" in forced.stderr  # --progress draws the bar even into a log

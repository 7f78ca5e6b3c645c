"""Progress output: a bar on a terminal, plain lines in logs, from one helper (`fzpack.progress`)."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner

from fzpack.progress import Progress, is_progress_setting, progress_mode, setting_from_flag
from fzpack.train import TrainConfig, TrainError, train
from fzpack_cli.main import cli


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize(("setting", "log", "tty"), [
    (True, "lines", "bar"), (None, "lines", "bar"), ("auto", "lines", "bar"), ("bar", "bar", "bar"),
    ("lines", "lines", "lines"), (False, "off", "off"), ("off", "off", "off"),
])
def test_mode_follows_the_setting_and_the_stream(setting, log, tty):
    assert progress_mode(setting, io.StringIO()) == log
    assert progress_mode(setting, Terminal()) == tty


def test_bad_settings_are_refused():
    for bad in (1, 0, "yes", 0.5, []):
        assert not is_progress_setting(bad)
        with pytest.raises(ValueError, match="progress"):
            progress_mode(bad)
    with pytest.raises(TrainError, match="progress"):
        TrainConfig(progress="verbose").validate()
    assert [setting_from_flag(f) for f in (None, True, False)] == ["auto", "bar", "lines"]


def test_closed_stream_is_not_a_terminal():
    stream = io.StringIO()
    stream.close()
    assert progress_mode(True, stream) == "lines"


@pytest.mark.parametrize(("stream", "frames", "lines"), [(io.StringIO, False, True), (Terminal, True, False)])
def test_bar_or_lines_never_both(stream, frames, lines):
    out = stream()
    p = Progress(True, out)
    for _ in p.bar(range(3), desc="epoch 1/1"):
        pass
    p.line("epoch 1/1: done")
    text = out.getvalue()
    assert ("\r" in text) == frames and ("epoch 1/1: done\n" in text) == lines


def test_off_prints_nothing():
    out = io.StringIO()
    p = Progress(False, out)
    assert list(p.bar(range(3))) == [0, 1, 2]
    p.line("nothing")
    assert out.getvalue() == ""


def small(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(method="snip", arch="lenet-300-100", dataset="synthetic", synthetic_size=200, epochs=2,
                                 device="cpu", seed=3), **kw})


def test_trainer_without_a_log_prints_one_line_per_epoch_when_not_a_terminal(capsys):
    train(small())  # progress=True: auto; pytest's stderr is no terminal
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [line.split(":")[0] for line in err.splitlines()] == ["epoch 1/2", "epoch 2/2"]
    train(small(progress=False))
    assert capsys.readouterr().err == ""


def test_old_configs_keep_their_meaning():
    for old in (True, False):  # a resume checkpoint or metrics.json from before the modes
        assert TrainConfig.from_dict({**small().to_dict(), "progress": old}).progress is old
    assert "progress" in TrainConfig.RESUMABLE_CHANGES


ARGS = ("train", "--method", "snip", "--arch", "lenet-300-100", "--dataset", "synthetic", "--synthetic-size", 200,
        "--epochs", 2, "--device", "cpu")


@pytest.mark.parametrize("flag", [None, "--no-progress"])
def test_cli_train_prints_plain_epoch_lines_to_a_log(tmp_path, flag):
    res = run(*ARGS, *([flag] if flag else []), "-o", tmp_path / "m.pt")
    assert res.exit_code == 0, res.output
    assert "\r" not in res.stderr
    assert [line.split(":")[0] for line in res.stderr.splitlines()] == ["epoch 1/2", "epoch 2/2"]  # and nothing else


def test_cli_train_progress_forces_the_bar(tmp_path):
    res = run(*ARGS, "--progress", "-o", tmp_path / "m.pt")
    assert res.exit_code == 0, res.output
    assert "\r" in res.stderr and "it/s" in res.stderr  # tqdm frames, although stderr is captured
    assert "epoch 2/2: loss" in res.stderr  # the epoch summaries still follow the bar
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["progress"] == "bar"


def test_cli_demo_prints_one_line_per_epoch_and_stage_to_a_log(tmp_path):
    res = run("demo", "--steps", 2, "-d", tmp_path / "demo", "--data-dir", tmp_path / "none")  # synthetic stand-in
    assert res.exit_code == 0, res.output
    assert "\r" not in res.stderr
    stages = [line.split(":")[0] for line in res.stderr.splitlines()]
    assert stages == ["train", "epoch 1/1", "compress", "restore", "evaluate"]
    assert "bit for bit: yes" in res.stdout


@pytest.mark.parametrize(("flag", "setting"), [(None, "auto"), ("--progress", "bar"), ("--no-progress", "lines"),
                                               ("--json", False)])
def test_cli_demo_passes_the_progress_flag(monkeypatch, tmp_path, flag, setting):
    import fzpack_cli.demo_cmd as demo_cmd

    seen = {}

    def fake(workdir, **kw):
        seen.update(kw)
        raise SystemExit(0)

    monkeypatch.setattr(demo_cmd, "run_demo", fake)
    run("demo", "-d", tmp_path, *([flag] if flag else []))
    assert seen["progress"] == setting

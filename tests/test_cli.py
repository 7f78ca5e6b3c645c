"""The `fzpack` command line: outputs, JSON, exit codes, one-line errors, no partial files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import fzpack
from fzpack.equality import tree_differences
from fzpack_cli.main import cli


@pytest.fixture()
def model_pt(tmp_path, frozen_ckpt):
    p = tmp_path / "model.pt"
    fzpack.checkpoint.save_checkpoint(frozen_ckpt, p)
    return p


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_compress_restore_verify_inspect(model_pt, tmp_path):
    r = run("compress", model_pt)
    assert r.exit_code == 0, r.output
    assert "factor" in r.output and "mask" in r.output and "header" in r.output
    fzp = tmp_path / "model.fzp"
    r = run("restore", fzp, "-o", tmp_path / "back.pt")
    assert r.exit_code == 0, r.output
    assert tree_differences(torch.load(model_pt, weights_only=True), torch.load(tmp_path / "back.pt", weights_only=True)) == []
    r = run("verify", fzp, "--against", model_pt)
    assert r.exit_code == 0 and "bit-identical" in r.output
    r = run("inspect", fzp)
    assert r.exit_code == 0 and "q = 0.99" in r.output and "fc1.weight" in r.output
    info = json.loads(run("inspect", fzp, "--json").output)
    assert info["seed"] == 7 and info["method"] == "freezenet" and abs(info["q"] - 0.99) < 1e-3
    assert sum(info["breakdown"].values()) == info["file_bytes"] == fzp.stat().st_size


def test_compress_json_and_safetensors(model_pt, tmp_path):
    rep = json.loads(run("compress", model_pt, "-o", tmp_path / "x.fzp", "--json").output)
    assert rep["output_bytes"] == (tmp_path / "x.fzp").stat().st_size
    r = run("restore", tmp_path / "x.fzp", "--format", "safetensors", "-o", tmp_path / "x.safetensors")
    assert r.exit_code == 0, r.output
    from safetensors import safe_open

    with safe_open(tmp_path / "x.safetensors", "pt") as f:
        meta = json.loads(f.metadata()["fzpack"])
        assert meta["fzpack"]["seed"] == 7
        assert torch.equal(f.get_tensor("__fzpack_mask__.fc1.weight"), torch.load(model_pt, weights_only=True)["fzpack"]["tensors"]["fc1.weight"]["mask"])


def test_verify_reports_differences(model_pt, tmp_path, frozen_ckpt):
    run("compress", model_pt)
    other = {**frozen_ckpt, "state_dict": {**frozen_ckpt["state_dict"], "fc2.bias": torch.zeros(10)}}
    fzpack.checkpoint.save_checkpoint(other, tmp_path / "other.pt")
    r = CliRunner().invoke(cli, ["verify", str(tmp_path / "model.fzp"), "--against", str(tmp_path / "other.pt")])
    assert r.exit_code == 1 and "fc2.bias" in r.output


@pytest.mark.parametrize("content", [None, b"garbage", b"\x89FZP\r\n\x1a\n" + bytes(30)])
def test_bad_input_is_one_line_and_leaves_no_output(tmp_path, content):
    src = tmp_path / "in.fzp"
    if content is not None:
        src.write_bytes(content)
    for args in (["restore", src, "-o", tmp_path / "out.pt"], ["inspect", src], ["verify", src]):
        r = CliRunner().invoke(cli, [str(a) for a in args])
        assert r.exit_code == 1, r.output
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("fzpack: ") and str(src) in lines[0], r.output
        assert "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == (["in.fzp"] if content is not None else [])


def test_console_script_prints_no_traceback(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    p = subprocess.run([sys.executable, "-m", "fzpack_cli.main", "compress", str(bad)], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "not a readable PyTorch checkpoint" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "bad.fzp").exists()


def test_help_has_examples():
    for cmd in ("compress", "restore", "inspect", "verify", "demo"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "Example" in r.output

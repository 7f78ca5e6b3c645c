"""`fzpack compare`: every size is a produced file, lossless rows decode bit for bit, lossy rows are marked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import fzpack
from fzpack.baselines.zipnn_row import zipnn_available
from fzpack.checkpoint import FrozenTensor
from fzpack.compare import compare
from fzpack.equality import tree_differences
from fzpack.generator import InitSpec, random_mask
from fzpack_cli.main import cli

GENERIC = {"torch-save", "safetensors", "safetensors-zstd", "bytegroup-zstd", "fzpack"} | ({"zipnn"} if zipnn_available() else set())
SPARSE = {"sparse-coo", "sparse-csr", "bitmask-values", "paper"}
LOSSY = {"fzpack-fp16", "fzpack-bf16", "fzpack-q8"}


@pytest.fixture(scope="module")
def frozen_report(frozen_ckpt, tmp_path_factory):
    keep = tmp_path_factory.mktemp("artifacts")
    return compare(frozen_ckpt, keep=keep), keep


def _snip_checkpoint() -> dict:
    """A small SNIP-style checkpoint: untrained entries pruned to zero (init 'zeros')."""
    sd, frozen = {}, {}
    for name, shape in (("a.weight", (30, 20)), ("b.weight", (5, 30))):
        m = random_mask(3, name, shape, 40)
        w = torch.zeros(shape)
        w[m] = torch.linspace(-1, 1, 40)
        sd[name], frozen[name] = w, FrozenTensor(spec=InitSpec("zeros"), mask=m, scheme="zeros")
        sd[name.replace("weight", "bias")] = torch.linspace(0, 1, shape[0])
    return fzpack.checkpoint.make_checkpoint(sd, frozen, seed=3, method="snip")


def test_every_byte_count_is_a_produced_file(frozen_report):
    report, keep = frozen_report
    assert {r.key for r in report.rows} == GENERIC | SPARSE | LOSSY
    for r in report.rows:
        assert Path(r.file).parent == keep and Path(r.file).stat().st_size == r.bytes > 0
        assert r.factor == pytest.approx(report.dense_fp32_bytes / r.bytes)
        assert r.bits_per_parameter == pytest.approx(8 * r.bytes / report.parameters)
    assert report.dense_fp32_bytes == 4 * report.parameters == 4 * 431_080


def test_lossless_rows_restore_bit_exactly(frozen_ckpt, frozen_report):
    report, keep = frozen_report
    for key in GENERIC:
        r = report.row(key)
        assert r.lossless is True and r.restorable is True and r.max_abs_error is None, key
    assert tree_differences(frozen_ckpt, fzpack.restore(keep / "model.fzp")) == []  # the whole checkpoint
    assert report.row("fzpack").bytes < report.row("paper").bytes


def test_lossy_rows_are_marked_and_within_bound(frozen_ckpt, frozen_report):
    report, keep = frozen_report
    vmax = max(float(frozen_ckpt["state_dict"][n].abs().max()) for n in frozen_ckpt["fzpack"]["tensors"])
    bounds = {"fzpack-fp16": 2.0**-11 * vmax, "fzpack-bf16": 2.0**-8 * vmax, "fzpack-q8": 0.01}
    for key, bound in bounds.items():
        r = report.row(key)
        assert r.lossless is False and r.restorable is True and 0 < r.max_abs_error <= bound, key
        assert fzpack.inspect(Path(r.file))["lossy"] is True
    assert report.row("fzpack-q8").bytes < report.row("fzpack-fp16").bytes < report.row("fzpack").bytes


def test_sparse_rows_cannot_restore_a_freezenet(frozen_ckpt, frozen_report):
    report, _ = frozen_report
    for key in ("sparse-coo", "sparse-csr", "bitmask-values"):
        r = report.row(key)
        assert r.lossless is False and r.restorable is False and r.max_abs_error > 0.01
    paper = report.row("paper")
    k = sum(int(t["mask"].sum()) for t in frozen_ckpt["fzpack"]["tensors"].values())
    assert paper.lossless is None and paper.restorable is False and paper.bytes == 4 * (k + 580)
    assert any("cannot restore a FreezeNet" in n for n in report.notes)
    assert report.mask_totals["fzpack_bytes"] == fzpack.inspect(Path(report.row("fzpack").file))["mask_bytes"]
    assert report.mask_totals["fzpack_bytes"] < report.mask_totals["iid_bytes"]
    assert {m["name"] for m in report.masks} == set(frozen_ckpt["fzpack"]["tensors"])


def test_sparse_rows_restore_a_snip_checkpoint():
    report = compare(_snip_checkpoint())
    for key in ("sparse-coo", "sparse-csr", "bitmask-values"):
        assert report.row(key).lossless is True, key
    assert report.row("paper").restorable is False


def test_plain_state_dict_gets_generic_rows(tmp_path):
    sd = {"w": torch.randn(64, 32), "b": torch.zeros(64), "step": torch.tensor(5)}
    torch.save(sd, tmp_path / "plain.pt")
    report = compare(tmp_path / "plain.pt", keep=tmp_path / "k")
    assert {r.key for r in report.rows} == GENERIC
    assert all(r.lossless for r in report.rows) and not report.masks and not report.frozen
    assert any("generic rows only" in n for n in report.notes)


def test_cli_json_schema_and_fzp_input(tmp_path):
    pt = tmp_path / "snip.pt"
    fzpack.checkpoint.save_checkpoint(_snip_checkpoint(), pt)
    fzpack.compress(pt)
    r = CliRunner().invoke(cli, ["compare", str(tmp_path / "snip.fzp"), "--json", "--keep", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["schema"] == 1 and out["frozen"] is True and out["method"] == "snip"
    assert set(out) >= {"source", "parameters", "trained_parameters", "dense_fp32_bytes", "rows", "masks", "mask_totals", "notes"}
    for row in out["rows"]:
        assert set(row) == {"key", "representation", "bytes", "factor", "bits_per_parameter", "bits_per_trained_parameter",
                            "lossless", "restorable", "max_abs_error", "file", "note"}
        assert Path(row["file"]).stat().st_size == row["bytes"]
    assert any("restores to" in n for n in out["notes"])
    r = CliRunner().invoke(cli, ["compare", str(pt), "--no-progress"])
    assert r.exit_code == 0 and "paper convention" in r.output and "masks: fzpack" in r.output and "LOSSY" in r.output


def test_cli_plot(tmp_path):
    pytest.importorskip("matplotlib")
    sd = {"w": torch.randn(16, 8)}
    torch.save(sd, tmp_path / "p.pt")
    r = CliRunner().invoke(cli, ["compare", str(tmp_path / "p.pt"), "--plot", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

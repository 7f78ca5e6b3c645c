"""benchmarks/bench_generic.py (issue 10's generic-path benchmark): its core, in process, on a tiny checkpoint.

The worker processes and the CLI runs are left to ``python benchmarks/bench_generic.py --quick``
(each costs an interpreter start); here: the operations timed in process, the bit-exactness check
of the restored file (and that it catches one flipped bit), the byte sizes, and the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_generic as bg  # noqa: E402

CASE = bg.Case("unit-bf16", "bfloat16", 2, 96, 5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("generic")
    return bg.prepare(CASE, d), bg.prepare_warm(CASE, d)


def test_state_dict_is_deterministic_and_of_the_case_dtype():
    a, b = CASE.state_dict(), CASE.state_dict()
    assert list(a) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert all(v.dtype == torch.bfloat16 for v in a.values()) and a["layers.1.weight"].shape == (96, 96)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_operations_restore_bit_exactly_with_sane_numbers(files):
    p, warm = files
    runs = {op: [bg.timed_op(op, p, warm)] for op in bg.OPS}
    for op, (r,) in runs.items():
        assert r["seconds"] > 0 and r["peak_bytes"] >= 0 and r["warm_seconds"] > 0, (op, r)
    assert p.fzp.stat().st_size > 0 and p.saved_st.stat().st_size > 0
    assert bg.check_restored(p.pt, p.restored) == 4
    assert bg.check_restored(p.pt, p.saved_pt) == 4

    sizes = bg.byte_sizes(CASE, p, zstd19_max_mb=1.0)
    assert sizes["pt"] == p.pt.stat().st_size and sizes["safetensors"] == p.st.stat().st_size
    assert sizes["fzp"] == p.fzp.stat().st_size < sizes["safetensors"]  # bf16 noise still loses its exponent redundancy
    assert 0 < sizes["zstd3"]["bytes"] and 0 < sizes["zstd19"]["bytes"] and sizes["zstd3"]["compress_s"] > 0
    if sizes["zipnn"] is not None:
        assert sizes["zipnn"]["bytes"] > 0 and sizes["zipnn"]["compress_s"] > 0

    res = bg.summarise(CASE, sizes["pt"], 4, 1, runs, {"compress": [1.0], "restore": [2.0]}, sizes)
    assert res["ops"]["restore"]["seconds"] == runs["restore"][0]["seconds"]
    text = bg.report([res], argparse.Namespace(repeat=1, zstd19_max_mb=1.0))
    assert bg.TITLE in text and "| unit-bf16 | restore: throughput | >= 500 MB/s |" in text
    assert len(bg.targets(res)) == (5 if sizes["zipnn"] is not None else 4)


def test_the_check_catches_one_flipped_bit(files, tmp_path):
    p, _ = files
    sd = torch.load(p.pt, weights_only=True)
    bits = sd["layers.1.weight"].view(torch.int16)
    bits[7, 3] ^= 1
    torch.save(sd, tmp_path / "bad.pt")
    diffs = bg.restored_differences(p.pt, tmp_path / "bad.pt")
    assert len(diffs) == 1 and "layers.1.weight" in diffs[0]
    with pytest.raises(AssertionError, match="differs"):
        bg.check_restored(p.pt, tmp_path / "bad.pt")

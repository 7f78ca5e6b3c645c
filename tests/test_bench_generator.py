"""benchmarks/bench_generator.py: every row is measured under the kernel it is labelled with, and
--write replaces the generator section of docs/results.md in place (tiny shapes; the real run is
``python benchmarks/bench_generator.py --write``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_generator as bg  # noqa: E402
import common  # noqa: E402
from fzpack.generator import compiled  # noqa: E402

SHAPES = [("features.0.weight", (8, 3, 3, 3)), ("classifier.0.weight", (10, 160))]
needs_numba = pytest.mark.skipif(compiled.unavailable_reason() is not None, reason="numba unavailable")


@pytest.fixture(autouse=True)
def _default_kernel():
    yield
    compiled.set_kernel(None)


@needs_numba
def test_every_row_is_measured_and_labelled():
    info = bg.measure(list(bg.DISTS), ["compiled", "numpy"], [1, 2], repeats=2, numpy_repeats=1, shapes=SHAPES)
    assert info["values"] == 8 * 27 + 10 * 160
    got = [(r["dist"], r["kernel"], r["threads"], r["runs"]) for r in info["generator"]]
    assert got == [(d, k, t, n) for d in bg.DISTS for k, t, n in (("compiled", 1, 2), ("compiled", 2, 2), ("numpy", 1, 1))]
    assert {(r["operation"], r["threads"]) for r in info["memory"]} >= {
        ("torch.empty + copy_, one 61 MB tensor", 1), ("torch.empty + copy_, one 61 MB tensor", 2),
        ("torch.empty + fill_", 2), ("torch.empty + zero_", 1), ("np.empty + np.copyto", 1)}
    for r in info["generator"] + info["memory"]:
        assert len(r["times"]) == r["runs"] and r["seconds_min"] == min(r["times"]) > 0


@needs_numba
def test_a_fallback_to_numpy_is_never_labelled_compiled(monkeypatch):
    original = compiled.compiled_for
    # the small linear tensor silently falls back to numpy; the large-range check (active()) still passes
    monkeypatch.setattr(compiled, "compiled_for", lambda count: None if count == 1600 else original(count))
    with pytest.raises(AssertionError, match="labelled compiled but the generator chose"):
        bg.time_dist("normal", 1, "compiled", 1, SHAPES)
    bg.time_dist("normal", 1, "numpy", 1, SHAPES)  # numpy everywhere: labelled right


def test_write_replaces_the_generator_section_in_place(tmp_path, monkeypatch):
    results = tmp_path / "results.md"
    shutil.copy(common.RESULTS, results)
    monkeypatch.setattr(common, "RESULTS", results)
    info = bg.measure(["normal"], ["numpy"], [1], repeats=1, numpy_repeats=1, shapes=SHAPES)
    before = results.read_text()
    common.write_section(bg.SECTION, bg.section_body(info))
    text = results.read_text()
    assert text.count(f"<!-- BEGIN {bg.SECTION} -->") == 1
    assert "Format: generator throughput (issue 2)" not in text and "bench_format.py --section speed" not in text
    assert "Generator throughput per distribution vs a plain memory copy" in text
    # same place: right after the format-sizes section, everything else untouched
    assert text.index("<!-- END format-sizes -->") < text.index(f"<!-- BEGIN {bg.SECTION} -->")
    assert text.split(f"<!-- BEGIN {bg.SECTION} -->")[0] == before.split(f"<!-- BEGIN {bg.SECTION} -->")[0]
    assert text.split(f"<!-- END {bg.SECTION} -->")[1] == before.split(f"<!-- END {bg.SECTION} -->")[1]


@needs_numba
def test_cli_json_prints_every_number():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_generator.py"), "--repeats", "1", "--dists",
                           "pm,random_mask", "--threads", "1", "--kernels", "compiled", "--json"],
                          capture_output=True, text=True, timeout=300, check=True)
    info = json.loads(proc.stdout)
    assert info["values"] == 15_239_872 and info["tensors"] == 16
    assert [(r["dist"], r["kernel"], r["threads"]) for r in info["generator"]] == [("pm", "compiled", 1), ("random_mask", "compiled", 1)]
    assert all(len(r["times"]) == 1 for r in info["generator"] + info["memory"])

"""The fuzz harnesses in CI: every parser target runs a few thousand mutated inputs, and every past finding stays fixed.

The in-process seeded mutator always runs (so CI never skips the parsers when atheris is
missing); with atheris installed, one coverage-guided libFuzzer process also runs all targets
behind a selector byte (``--target mux``). The long run is ``benchmarks/fuzz.py --target all``
(docs/results.md). A regression file ``tests/fuzz_regressions/<target>--<what>.bin`` is an input
that once made its harness raise something other than FzpackError.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from fuzz_engine import run_mutator  # noqa: E402
from fuzz_targets import TARGETS, check  # noqa: E402

REGRESSIONS = sorted((Path(__file__).parent / "fuzz_regressions").glob("*.bin"))
#: Mutated executions per target in CI (about 20 s on 2 busy cores, with the atheris run below).
RUNS = {"container": 3000, "fl": 3000, "mask": 4000, "mask_kernels": 2000, "tree": 5000, "header": 5000, "lossy": 5000, "index": 5000,
        "values": 5000, "q8_index": 5000}


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_past_finding_is_refused_with_an_fzpack_error(path):
    check(path.name.split("--")[0], path.read_bytes())


def test_every_target_has_seeds_and_a_ci_budget():
    assert set(RUNS) == set(TARGETS)
    for name, t in TARGETS.items():
        assert t.seeds(), f"{name} has no seed inputs in formats/vectors"


@pytest.mark.parametrize("name", list(TARGETS))
def test_target_survives_mutated_seeds(name, tmp_path):
    summary = run_mutator(name, runs=RUNS[name], seed=11, workdir=tmp_path)
    assert summary["executions"] >= RUNS[name]
    assert summary["findings"] == [], "\n".join(open(f["input"][:-4] + ".txt").read() for f in summary["findings"])


def test_atheris_run_over_all_targets(tmp_path):
    pytest.importorskip("atheris", reason="atheris not installed: the seeded mutator above covered the parsers")
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--target", "mux", "--runs", "20000",
                           "--engine", "atheris", "--no-coverage", "--workdir", str(tmp_path), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    report = json.loads(out.read_text())
    assert report["executions"] >= 19000, proc.stdout + proc.stderr[-2000:]
    assert report["findings"] == 0, proc.stdout

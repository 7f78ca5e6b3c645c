"""The C99 transcription of the spec (formats/vectors/generator_v1_ref.c) reproduces the library bit for bit."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fzpack.generator import BANK, INIT, MASK, InitSpec, generate_numpy, random_mask_rows, stream_key

ROOT = Path(__file__).parents[1]
SOURCE = ROOT / "formats/vectors/generator_v1_ref.c"
VECTORS = json.loads((ROOT / "formats/vectors/generator.json").read_text(encoding="utf-8"))
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

pytestmark = pytest.mark.skipif(CC is None, reason="needs a C compiler")


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("cref") / "gen"
    # -ffp-contract=off: the spec forbids fused multiply-add (it changes ~4 % of normal values)
    subprocess.run([CC, "-std=c99", "-O2", "-ffp-contract=off", "-o", str(exe), str(SOURCE), "-lm"], check=True)
    return exe


def run(exe: Path, *args: object) -> list[int]:
    out = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, check=True).stdout
    return [int(x, 16) for x in out.split()]


def test_c_matches_golden_vectors(gen: Path) -> None:
    for case in VECTORS["values"]:
        s = case["spec"]
        if s["dist"] == "bank":
            k0, k1 = stream_key(case["seed"], BANK, s["bank"])
            got = run(gen, f"{k0:x}", f"{k1:x}", "bank", repr(s["p0"]), case["banks"][s["bank"]], s["offset"],
                      case["start"], 8)
        else:
            k0, k1 = stream_key(case["seed"], INIT, case["name"])
            got = run(gen, f"{k0:x}", f"{k1:x}", s["dist"], repr(s["p0"]), repr(s["p1"]), case["start"], 8)
        assert got == [int(h, 16) for h in case["values"]], case


@pytest.mark.parametrize(
    "spec", [InitSpec("normal", 0.0, 1.0), InitSpec("normal", -0.25, 0.0589), InitSpec("uniform", -0.3, 0.7)]
)
def test_c_matches_long_slices(gen: Path, spec: InitSpec) -> None:
    k0, k1 = stream_key(99, INIT, "features.3.weight")
    got = np.array(run(gen, f"{k0:x}", f"{k1:x}", spec.dist, repr(spec.p0), repr(spec.p1), 12345, 20000), np.uint32)
    expected = generate_numpy(spec, 99, "features.3.weight", 12345, 20000).view(np.uint32)
    assert np.array_equal(got, expected)


def run_dct(exe: Path, shape: tuple[int, ...], start: int, count: int) -> np.ndarray:
    return np.array(run(exe, "dct", start, count, *shape), dtype=np.uint32)


@pytest.mark.parametrize("case", VECTORS["dct"], ids=lambda c: "x".join(map(str, c["shape"])))
def test_c_dct_matches_golden_vectors(gen: Path, case) -> None:
    shape = tuple(case["shape"])
    assert run_dct(gen, shape, case["start"], 8).tolist() == [int(h, 16) for h in case["values"]]
    full = run_dct(gen, shape, 0, int(np.prod(shape)))
    assert hashlib.sha256(full.astype("<u4").tobytes()).hexdigest() == case["sha256"]


@pytest.mark.parametrize(
    "shape, start, count",
    [((300, 64, 3, 3), 0, 172800), ((784, 300), 1000, 50000), ((3, 2**30), 2**30 + 12345, 5000),
     ((2**30, 2), 2**31 - 6000, 6000), ((10, 4, 2, 2, 2), 0, 320)],
)
def test_c_dct_matches_long_slices(gen: Path, shape, start: int, count: int) -> None:
    expected = generate_numpy(InitSpec("dct"), 0, "w", start, count, shape=shape).view(np.uint32)
    assert np.array_equal(run_dct(gen, shape, start, count), expected)


def run_indices(exe: Path, seed: int, name: str, shape: tuple[int, ...], k: int) -> list[int]:
    k0, k1 = stream_key(seed, MASK, name)
    args = [f"{k0:x}", f"{k1:x}", "mask_rows", k, *shape]
    out = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]  # decimal flat indices


@pytest.mark.parametrize("case", VECTORS["row_masks"], ids=lambda c: f"{c['name']}-{c['shape']}")
def test_c_row_masks_match_golden_vectors(gen: Path, case) -> None:
    assert run_indices(gen, case["seed"], case["name"], tuple(case["shape"]), case["k"]) == case["indices"]


@pytest.mark.parametrize("shape, k", [((64, 32, 3, 3), 1000), ((500,), 77), ((10, 10), 100), ((7, 9), 0)])
def test_c_row_masks_match_library(gen: Path, shape, k: int) -> None:
    expected = np.flatnonzero(random_mask_rows(11, "layer3.0.conv1.weight", shape, k).numpy()).tolist()
    assert run_indices(gen, 11, "layer3.0.conv1.weight", shape, k) == expected

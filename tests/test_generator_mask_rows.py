"""random_mask_rows (spec 8.1): k entries spread equally over the rows, random_mask's keys within each row."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fzpack.errors import FzpackError
from fzpack.generator import MASK, random_mask, random_mask_rows, stream_key
from fzpack.generator import reference as ref
from fzpack.generator.mask import row_counts, select_smallest
from fzpack.generator.philox import philox_numpy

VECTORS = json.loads((Path(__file__).parents[1] / "formats/vectors/generator.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", VECTORS["row_masks"], ids=lambda c: f"{c['name']}-{c['shape']}")
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_row_mask_vectors(case, backend: str) -> None:
    m = random_mask_rows(case["seed"], case["name"], tuple(case["shape"]), case["k"], backend=backend)
    assert m.shape == tuple(case["shape"]) and m.dtype == torch.bool
    assert np.flatnonzero(m.numpy()).tolist() == case["indices"]


def test_one_dimensional_vector_is_random_masks() -> None:
    # the 1-D row-mask vector repeats random_mask's first vector: one row is random_mask
    one_d = [c for c in VECTORS["row_masks"] if len(c["shape"]) == 1][0]
    plain = [c for c in VECTORS["masks"] if (c["seed"], c["name"], c["n"], c["k"]) ==
             (one_d["seed"], one_d["name"], one_d["shape"][0], one_d["k"])][0]
    assert one_d["indices"] == plain["indices"]


shapes = st.lists(st.integers(0, 7), min_size=0, max_size=4).map(tuple)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.text(max_size=8), shape=shapes, data=st.data())
def test_counts_backends_and_reference(seed: int, name: str, shape, data) -> None:
    numel = math.prod(shape)
    k = data.draw(st.integers(0, numel))
    a = random_mask_rows(seed, name, shape, k)
    b = random_mask_rows(seed, name, shape, k, backend="torch")
    assert a.shape == shape and a.dtype == torch.bool and torch.equal(a, b)
    assert int(a.sum()) == k
    assert np.flatnonzero(a.numpy()).tolist() == ref.mask_rows_indices(seed, name, shape, k)
    if len(shape) >= 2 and numel:
        per_row = a.reshape(shape[0], -1).sum(dim=1).tolist()
        assert per_row == row_counts(shape[0], k)
        assert max(per_row) - min(per_row) <= 1
    if len(shape) < 2:
        assert torch.equal(a, random_mask(seed, name, shape, k))


def test_row_counts_never_exceed_the_row() -> None:
    for rows in range(1, 12):
        for width in range(0, 6):
            for k in range(rows * width + 1):
                counts = row_counts(rows, k)
                assert sum(counts) == k and max(counts) <= width and counts == sorted(counts, reverse=True)


def test_single_row_equals_random_mask() -> None:
    for shape in [(50,), (), (1, 50), (1, 5, 2, 5)]:
        numel = math.prod(shape)
        for k in (0, 1, numel // 3, numel):
            assert torch.equal(random_mask_rows(4, "w", shape, k), random_mask(4, "w", shape, k))


def test_rows_use_random_masks_keys() -> None:
    # within each row: random_mask's selection rule (select_smallest) on the row's slice of the same keys
    shape, k = (6, 4, 3, 3), 50
    m = random_mask_rows(9, "features.3.weight", shape, k).reshape(6, -1).numpy()
    keys = philox_numpy(stream_key(9, MASK, "features.3.weight"), 0, 54).reshape(6, 36)
    for r, k_r in enumerate(row_counts(6, k)):
        assert np.array_equal(m[r], select_smallest(keys[r].copy(), k_r))


def test_nested_in_k() -> None:
    shape = (16, 8, 3, 3)
    prev = random_mask_rows(1, "w", shape, 0)
    for k in range(1, 200, 7):
        cur = random_mask_rows(1, "w", shape, k)
        assert bool((prev <= cur).all()) and int(cur.sum()) == k
        prev = cur


def test_positions_within_a_row_are_uniform() -> None:
    m = random_mask_rows(7, "fc.weight", (2000, 50), 2000 * 5).numpy()
    col = m.sum(axis=0)  # each of 50 positions chosen with probability 5/50 in each of 2000 rows
    assert abs(col.mean() - 200) < 1e-9 and col.std() < 25  # binomial sd ~13.4


def test_device_and_errors() -> None:
    m = random_mask_rows(3, "w", (10, 10), 25, device=torch.device("cpu"), backend="torch")
    assert m.device.type == "cpu" and int(m.sum()) == 25
    for k in (-1, 101, 2.0, True):
        with pytest.raises(FzpackError):
            random_mask_rows(0, "w", (10, 10), k)
    with pytest.raises(FzpackError):
        random_mask_rows(0, "w", (-2, 3), 1)
    with pytest.raises(FzpackError):
        random_mask_rows(2**32, "w", (3, 3), 1)
    with pytest.raises(FzpackError):
        random_mask_rows(0, "w", (3, 3), 1, backend="cupy")
    with pytest.raises(FzpackError):
        random_mask_rows(0, "w", (3, 3), 1, device="not-a-device")

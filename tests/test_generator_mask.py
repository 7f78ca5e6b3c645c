"""random_mask: exactly k seed-determined positions, the k smallest 64-bit words (ties: lower index)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fzpack.errors import FzpackError
from fzpack.generator import random_mask
from fzpack.generator import reference as ref
from fzpack.generator.mask import select_smallest

VECTORS = json.loads((Path(__file__).parents[1] / "formats/vectors/generator.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", VECTORS["masks"], ids=lambda c: c["name"])
def test_mask_vectors(case) -> None:
    m = random_mask(case["seed"], case["name"], (case["n"],), case["k"])
    assert np.flatnonzero(m.numpy()).tolist() == case["indices"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.text(max_size=8), n=st.integers(0, 150), data=st.data())
def test_exactly_k_and_matches_reference(seed: int, name: str, n: int, data) -> None:
    k = data.draw(st.integers(0, n))
    m = random_mask(seed, name, (n,), k)
    assert m.dtype == torch.bool and int(m.sum()) == k
    assert np.flatnonzero(m.numpy()).tolist() == ref.mask_indices(seed, name, n, k)


def test_shape_determinism_and_independence() -> None:
    a = random_mask(1, "conv.weight", (64, 3, 3, 3), 100)
    assert a.shape == (64, 3, 3, 3) and int(a.sum()) == 100
    assert torch.equal(a, random_mask(1, "conv.weight", (64, 3, 3, 3), 100))
    assert not torch.equal(a, random_mask(1, "conv2.weight", (64, 3, 3, 3), 100))
    assert not torch.equal(a, random_mask(2, "conv.weight", (64, 3, 3, 3), 100))
    # nested: the k smallest keys contain the k-1 smallest
    b = random_mask(1, "conv.weight", (64, 3, 3, 3), 99)
    assert bool((b <= a).all())


def test_large_mask_is_uniform_enough() -> None:
    n, k = 1_000_000, 10_000
    m = random_mask(7, "fc.weight", (1000, 1000), k).numpy()
    assert m.size == n and int(m.sum()) == k
    rows = m.sum(axis=1)
    assert abs(rows.mean() - 10) < 1e-9 and rows.std() < 4.0  # binomial-like spread (sd ~3.2)


def test_ties_go_to_lower_index() -> None:
    keys = np.array([5, 3, 3, 3, 1, 3], dtype=np.uint64)
    assert np.flatnonzero(select_smallest(keys, 3)).tolist() == [1, 2, 4]
    assert np.flatnonzero(select_smallest(keys, 5)).tolist() == [1, 2, 3, 4, 5]
    big = np.array([2**64 - 1, 2**63, 2**63 + 1, 0], dtype=np.uint64)  # unsigned order, not signed
    assert np.flatnonzero(select_smallest(big, 2)).tolist() == [1, 3]


@pytest.mark.parametrize("k", [-1, 11, 2.0, True])
def test_bad_k(k) -> None:
    with pytest.raises(FzpackError):
        random_mask(0, "w", (10,), k)


def test_bad_shape_and_seed() -> None:
    with pytest.raises(FzpackError):
        random_mask(0, "w", (-2, 3), 1)
    with pytest.raises(FzpackError):
        random_mask(2**32, "w", (3,), 1)


@pytest.mark.parametrize("case", VECTORS["masks"], ids=lambda c: c["name"])
def test_torch_backend_meets_the_vectors(case) -> None:
    """The backend a GPU restore uses (keys and selection as torch ops on the device), run on the CPU."""
    m = random_mask(case["seed"], case["name"], (case["n"],), case["k"], backend="torch")
    assert np.flatnonzero(m.numpy()).tolist() == case["indices"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.text(max_size=8),
       shape=st.sampled_from([(0,), (1,), (7,), (3, 5), (4, 3, 2, 2), (2, 0, 3), ()]), data=st.data())
def test_torch_backend_equals_numpy(seed: int, name: str, shape, data) -> None:
    n = int(np.prod(shape, dtype=np.int64))
    k = data.draw(st.sampled_from(sorted({0, n, data.draw(st.integers(0, n))})))
    a = random_mask(seed, name, shape, k, backend="numpy")
    b = random_mask(seed, name, shape, k, backend="torch")
    assert b.dtype == torch.bool and tuple(b.shape) == tuple(shape) and torch.equal(a, b)


def test_unknown_backend_or_device_is_an_fzpack_error() -> None:
    with pytest.raises(FzpackError):
        random_mask(0, "w", (4,), 1, backend="cupy")
    with pytest.raises(FzpackError):
        random_mask(0, "w", (4,), 1, device="no-such-device")


def _exact_smallest(keys: np.ndarray, k: int) -> np.ndarray:
    """The rule itself: the first k indices of the keys sorted by (key, index)."""
    chosen = np.zeros(keys.size, dtype=bool)
    chosen[np.argsort(keys, kind="stable")[:k]] = True
    return chosen


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 400), data=st.data(),
       kind=st.sampled_from(["uniform", "ties", "large-keys", "small-keys", "constant"]))
def test_selection_fast_path_and_fallback_follow_the_rule(n: int, data, kind: str) -> None:
    """select_smallest / select_smallest_rows take a candidate shortcut that is only valid when
    enough keys fall below a bound: keys built to miss it (all large), to crowd it (all small),
    and with many ties must give the rule's answer too."""
    from fzpack.generator.mask import select_smallest_rows

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    top = np.iinfo(np.uint64).max
    keys = {"uniform": lambda: rng.integers(0, top, n, dtype=np.uint64, endpoint=True),
            "ties": lambda: rng.integers(0, 4, n).astype(np.uint64) << np.uint64(62),
            "large-keys": lambda: top - rng.integers(0, 1000, n).astype(np.uint64),
            "small-keys": lambda: rng.integers(0, 1000, n).astype(np.uint64),
            "constant": lambda: np.full(n, 7, dtype=np.uint64)}[kind]()
    k = data.draw(st.integers(0, n))
    assert np.array_equal(select_smallest(keys, k), _exact_smallest(keys, k))
    rows = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
    grid = keys.reshape(rows, n // rows)
    counts = [data.draw(st.integers(0, n // rows)) for _ in range(rows)]
    want = np.stack([_exact_smallest(grid[r], c) for r, c in enumerate(counts)])
    assert np.array_equal(select_smallest_rows(grid, counts), want)

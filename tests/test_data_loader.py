"""Dataset registry, train/validation splits, and the seeded, shardable, augmenting `Batches`."""

from __future__ import annotations

import dataclasses
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import fzpack.data
from fzpack.data import (
    MAX_TRANSLATION,
    Batches,
    DataError,
    DatasetInfo,
    dataset_info,
    list_datasets,
    load_dataset,
    normalize,
    train_val_split,
)

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


def ids_dataset(n: int, channels: int = 1, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels encode nothing in particular; labels = sample id, so batches are traceable."""
    gen = torch.Generator().manual_seed(123)
    images = torch.randint(0, 256, (n, channels, size, size), generator=gen, dtype=torch.uint8)
    return images, torch.arange(n)


def epoch_ids(batches: Batches, epoch: int) -> list[int]:
    batches.set_epoch(epoch)
    return [int(v) for _, y in batches for v in y]


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_fields() -> None:
    assert list_datasets() == ["fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic"]
    for name in list_datasets():
        info = dataset_info(name)
        assert isinstance(info, DatasetInfo) and info.name == name
        assert len(info.mean) == len(info.std) == info.in_channels
        assert all(0 < s < 1 for s in info.std) and all(0 < m < 1 for m in info.mean)
    c10, c100, fm = dataset_info("cifar10"), dataset_info("cifar100"), dataset_info("fashion-mnist")
    c10_fields = (c10.num_classes, c10.in_channels, c10.image_size, c10.default_batch_size, c10.augment)
    assert c10_fields == (10, 3, 32, 128, True)
    assert (c100.num_classes, c100.train_size, c100.test_size) == (100, 50_000, 10_000)
    fm_fields = (fm.in_channels, fm.image_size, fm.default_batch_size, fm.augment, fm.train_size)
    assert fm_fields == (1, 28, 100, False, 60_000)
    assert (dataset_info("synthetic").train_size, dataset_info("synthetic").test_size) == (2000, 500)
    assert dataset_info("FashionMNIST") is fm and dataset_info("CIFAR-10") is c10
    with pytest.raises(dataclasses.FrozenInstanceError):
        c10.num_classes = 3  # type: ignore[misc]


def test_unknown_dataset_lists_names() -> None:
    with pytest.raises(DataError, match="fashion-mnist, mnist, cifar10, cifar100, synthetic"):
        dataset_info("imagenet")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("svhn", "train")


def test_load_synthetic_sizes_and_determinism() -> None:
    x, y = load_dataset("synthetic", "train")
    assert x.shape == (2000, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert load_dataset("synthetic", "test")[0].shape[0] == 500
    a = load_dataset("synthetic", "train", synthetic_size=50, seed=4)
    b = load_dataset("synthetic", "train", synthetic_size=50, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], load_dataset("synthetic", "train", synthetic_size=50, seed=5)[0])
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("synthetic", "validation")


def test_load_idx_through_registry_checks_shape(tmp_path: Path) -> None:
    def idx(arr: np.ndarray) -> bytes:
        return struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()

    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx(np.zeros((3, 20, 20), np.uint8)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match=r"expected \(1, 28, 28\)"):
        load_dataset("mnist", "test", data_dir=tmp_path)


@pytest.mark.skipif(
    not (FASHION_ROOT / "t10k-images-idx3-ubyte.gz").is_file(), reason="dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist_test_split() -> None:
    x, y = load_dataset("fashion-mnist", "test")
    info = dataset_info("fashion-mnist")
    assert x.shape == (info.test_size, 1, 28, 28) and sorted(y.unique().tolist()) == list(range(10))
    batches = Batches(x, y, batch_size=info.default_batch_size, mean=info.mean, std=info.std, shuffle=False, seed=0)
    assert len(batches) == 100
    first, _ = next(iter(batches))
    assert first.shape == (100, 1, 28, 28) and abs(float(first.mean())) < 0.5  # roughly standardised


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize(
    ("n", "fraction", "n_val"), [(60_000, 0.1, 6000), (60_000, 0.05, 3000), (50_000, 0.1, 5000), (7, 0.0, 0)]
)
def test_split_sizes_disjoint_covering(n: int, fraction: float, n_val: int) -> None:
    tr, va = train_val_split(n, fraction, seed=1)
    assert len(va) == n_val and len(tr) == n - n_val and tr.dtype == va.dtype == torch.int64
    assert bool((tr[1:] > tr[:-1]).all()) and bool((va[1:] > va[:-1]).all())  # sorted, no repeats
    covered = torch.zeros(n, dtype=torch.int64).index_add_(0, torch.cat([tr, va]), torch.ones(n, dtype=torch.int64))
    assert bool((covered == 1).all())  # disjoint and covering


def test_split_deterministic_and_seed_dependent() -> None:
    a, b = train_val_split(1000, 0.1, seed=7), train_val_split(1000, 0.1, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], train_val_split(1000, 0.1, seed=8)[1])
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(DataError, match="val_fraction"):
            train_val_split(10, bad, seed=0)


# ----------------------------------------------------------------------------- Batches


def test_batches_shapes_normalisation_and_len() -> None:
    x, y = ids_dataset(10, channels=3)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    b = Batches(x, y, batch_size=4, mean=mean, std=std, shuffle=False, seed=0)
    out = list(b)
    assert len(b) == len(out) == 3 and [len(lb) for _, lb in out] == [4, 4, 2]
    xb, yb = out[0]
    assert xb.dtype == torch.float32 and yb.dtype == torch.int64 and xb.shape == (4, 3, 4, 4)
    expected = torch.cat([normalize(x[:4, c : c + 1], mean[c], std[c]) for c in range(3)], dim=1)
    assert torch.allclose(xb, expected, atol=1e-5)
    assert [int(v) for _, lb in out for v in lb] == list(range(10))  # shuffle=False keeps file order
    assert len(Batches(x, y, batch_size=4, mean=0.5, std=0.5, shuffle=False, seed=0, drop_last=True)) == 2


def test_batches_deterministic_per_seed_and_epoch() -> None:
    x, y = ids_dataset(50)
    def make(seed: int) -> Batches:
        return Batches(x, y, batch_size=8, mean=0.5, std=0.5, shuffle=True, seed=seed, augment=True)

    one, two = make(3), make(3)
    assert epoch_ids(one, 5) == epoch_ids(two, 5)
    one.set_epoch(5)
    two.set_epoch(5)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(one, two))
    assert epoch_ids(one, 5) != epoch_ids(one, 6)  # a new epoch reshuffles
    assert epoch_ids(one, 0) != epoch_ids(make(4), 0)  # a new seed reshuffles
    assert sorted(epoch_ids(one, 6)) == list(range(50))
    fresh = make(3)
    assert epoch_ids(fresh, 0) == [int(v) for _, lb in make(3) for v in lb]  # default epoch is 0


@pytest.mark.parametrize(("n", "world"), [(10, 3), (12, 4), (2, 3), (101, 8)])
def test_sharding_disjoint_covering_equal(n: int, world: int) -> None:
    x, y = ids_dataset(n)
    kw = dict(batch_size=3, mean=0.5, std=0.5, shuffle=True, seed=9)
    shards = [Batches(x, y, rank=r, world_size=world, **kw) for r in range(world)]
    ids = [epoch_ids(s, 2) for s in shards]
    per_rank = -(-n // world)
    assert all(len(i) == per_rank for i in ids) and len({len(s) for s in shards}) == 1
    assert set().union(*map(set, ids)) == set(range(n))
    # The shards interleave the single-process permutation, wrapped around for the padding.
    full = epoch_ids(Batches(x, y, **kw), 2)
    wrapped = (full * (world + 1))[: per_rank * world]
    assert all(ids[r] == wrapped[r :: world] for r in range(world))
    if n % world == 0:
        assert sum(len(i) for i in ids) == len(set().union(*map(set, ids)))  # truly disjoint


def crafted_batch(n: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with distinct, asymmetric content everywhere, so every flip/shift is identifiable."""
    base = (torch.arange(3 * size * size, dtype=torch.int64).view(1, 3, size, size) % 250 + 1).to(torch.uint8)
    return base.expand(n, -1, -1, -1).contiguous(), torch.arange(n)


def reference_augment(img: torch.Tensor, flip: bool, dy: int, dx: int) -> torch.Tensor:
    """Per-image loop reference: shift content by (dy, dx) with zero fill, then mirror."""
    out = torch.zeros_like(img)
    _, h, w = img.shape
    for i in range(h):
        for j in range(w):
            si, sj = i - dy, j - dx
            if 0 <= si < h and 0 <= sj < w:
                out[:, i, j] = img[:, si, sj]
    return out.flip(-1) if flip else out


def test_augmentation_flips_and_translates() -> None:
    n, p = 256, MAX_TRANSLATION
    x, y = crafted_batch(n)
    b = Batches(x, y, batch_size=64, mean=0.0, std=1.0, shuffle=False, seed=1, augment=True)
    shifts = range(-p, p + 1)
    params = [(f, dy, dx) for f in (False, True) for dy in shifts for dx in shifts]
    candidates = {k: reference_augment(x[0], *k) for k in params}
    seen = set()
    for xb, _ in b:
        raw = (xb * 255).round().to(torch.uint8)
        for img in raw:
            match = [k for k, ref in candidates.items() if torch.equal(img, ref)]
            assert len(match) == 1, "output is not a flip + translation of the input"
            seen.add(match[0])
    assert {k[0] for k in seen} == {False, True}
    assert {k[1] for k in seen} == set(range(-p, p + 1)) and {k[2] for k in seen} == set(range(-p, p + 1))
    plain = Batches(x, y, batch_size=64, mean=0.0, std=1.0, shuffle=False, seed=1)
    assert all(torch.equal((xb * 255).round().to(torch.uint8), x[: len(xb)]) for xb, _ in plain)


def test_augmentation_reproducible_and_epoch_dependent() -> None:
    x, y = crafted_batch(32)
    kw = dict(batch_size=32, mean=0.5, std=0.25, shuffle=False, seed=6, augment=True)
    a, b = Batches(x, y, **kw), Batches(x, y, **kw)
    a.set_epoch(2)
    b.set_epoch(2)
    first = next(iter(a))[0]
    assert torch.equal(first, next(iter(b))[0]) and torch.equal(first, next(iter(a))[0])
    b.set_epoch(3)
    assert not torch.equal(first, next(iter(b))[0])


def test_augmentation_independent_of_world_size() -> None:
    x, y = crafted_batch(24)
    kw = dict(batch_size=5, mean=0.5, std=0.5, shuffle=True, seed=2, augment=True)
    single = {int(lbl): img for xb, yb in Batches(x, y, **kw) for img, lbl in zip(xb, yb)}
    for r in range(4):
        for xb, yb in Batches(x, y, rank=r, world_size=4, **kw):
            assert all(torch.equal(img, single[int(lbl)]) for img, lbl in zip(xb, yb))


def test_global_rng_untouched() -> None:
    before = torch.random.get_rng_state()
    x, y = crafted_batch(40)
    train_val_split(100, 0.1, seed=3)
    load_dataset("synthetic", "test", synthetic_size=20)
    b = Batches(x, y, batch_size=16, mean=0.5, std=0.5, shuffle=True, seed=0, augment=True, rank=1, world_size=3)
    for epoch in range(3):
        b.set_epoch(epoch)
        list(b)
    assert torch.equal(before, torch.random.get_rng_state())


def test_batches_rejects_bad_arguments() -> None:
    x, y = ids_dataset(6, channels=3)
    good = dict(batch_size=2, mean=0.5, std=0.5, shuffle=False, seed=0)
    bad_cases = [
        ((x.float(), y), {}, "uint8"),
        ((x, y[:5]), {}, "labels"),
        ((x, y), {"batch_size": 0}, "batch_size"),
        ((x, y), {"rank": 2, "world_size": 2}, "rank"),
        ((x, y), {"std": (0.5, 0.0, 0.5)}, "positive"),
        ((x, y), {"mean": (0.5, 0.5)}, "2 values for 3 channels"),
    ]
    for args, override, match in bad_cases:
        with pytest.raises(DataError, match=match):
            Batches(*args, **{**good, **override})


def test_no_global_seeding_in_data_package() -> None:
    src = Path(fzpack.data.__file__).parent
    for path in src.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"torch\.manual_seed|np\.random\.seed|numpy\.random\.seed|random\.seed\(", text), path

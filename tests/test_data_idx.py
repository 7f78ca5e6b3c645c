"""IDX reader: layouts, gzip and raw, hostile headers, missing data; synthetic data; normalize."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fzpack.data import (
    DATASET_STATS,
    DataError,
    DatasetNotFoundError,
    find_idx_files,
    load_idx_dataset,
    make_synthetic,
    normalize,
    read_idx,
)
from fzpack.errors import FzpackError

N, H, W = 7, 28, 28


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Encode an array as IDX: magic 00 00 type ndim, big-endian uint32 dims, big-endian data."""
    big = array.astype(array.dtype.newbyteorder(">"))
    head = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + big.tobytes()


def sample_arrays(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.integers(0, 256, (n, H, W), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_split(folder: Path, split: str = "train", *, gz: bool, sep: str = "-", n: int = N, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = sample_arrays(n, seed)
    stem = "train" if split == "train" else "t10k"
    for kind, arr, nd in (("images", images, 3), ("labels", labels, 1)):
        data = idx_bytes(arr)
        path = folder / f"{stem}-{kind}{sep}idx{nd}-ubyte{'.gz' if gz else ''}"
        path.write_bytes(gzip.compress(data) if gz else data)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_plain_directory_roundtrip(tmp_path: Path, gz: bool) -> None:
    images, labels = write_split(tmp_path, "train", gz=gz)
    t_images, t_labels = write_split(tmp_path, "test", gz=gz, n=3, seed=1)
    x, y = load_idx_dataset("fashion-mnist", root=tmp_path, split="train")
    assert x.shape == (N, 1, H, W) and x.dtype == torch.uint8
    assert y.shape == (N,) and y.dtype == torch.int64
    assert np.array_equal(x[:, 0].numpy(), images) and np.array_equal(y.numpy(), labels)
    xt, yt = load_idx_dataset("fashion-mnist", root=tmp_path, split="test")
    assert np.array_equal(xt[:, 0].numpy(), t_images) and np.array_equal(yt.numpy(), t_labels)


@pytest.mark.parametrize(
    ("name", "sub"),
    [("fashion-mnist", "FashionMNIST/raw"), ("mnist", "MNIST/raw"), ("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")],
)
def test_torchvision_and_subdir_layouts(tmp_path: Path, name: str, sub: str) -> None:
    images, labels = write_split(tmp_path / sub, "test", gz=True)
    x, y = load_idx_dataset(name, root=tmp_path, split="test")
    assert np.array_equal(x[:, 0].numpy(), images) and np.array_equal(y.numpy(), labels)


def test_dot_names_and_raw_preferred_over_gz(tmp_path: Path) -> None:
    write_split(tmp_path, gz=True, seed=5)
    images, labels = write_split(tmp_path, gz=False, sep=".", seed=6)
    img_path, lbl_path = find_idx_files("mnist", tmp_path, "train")
    assert img_path.name == "train-images.idx3-ubyte" and lbl_path.name == "train-labels.idx1-ubyte"
    x, _ = load_idx_dataset("mnist", root=str(tmp_path))
    assert np.array_equal(x[:, 0].numpy(), images)


def test_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    images, _ = sample_arrays()
    path = tmp_path / "weird-name"
    path.write_bytes(gzip.compress(idx_bytes(images)))
    assert np.array_equal(read_idx(path), images)


def test_other_idx_types_native_order(tmp_path: Path) -> None:
    arr = np.arange(-6, 6, dtype=np.int32).reshape(3, 4) * 1000003
    (tmp_path / "a").write_bytes(idx_bytes(arr, 0x0C))
    out = read_idx(tmp_path / "a")
    assert out.dtype == np.dtype("int32") and out.dtype.isnative and np.array_equal(out, arr)
    f = np.linspace(-1, 1, 5, dtype=np.float32)
    (tmp_path / "f").write_bytes(idx_bytes(f, 0x0D))
    assert np.array_equal(read_idx(tmp_path / "f"), f)


GOOD = idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "shorter than the 4-byte magic"),
        (b"\x00\x00", "shorter than the 4-byte magic"),
        (b"\x01\x00\x08\x03" + GOOD[4:], "magic 01000803"),
        (b"\x00\x00\x07\x03" + GOOD[4:], "unknown IDX element type 0x07"),
        (b"\x00\x00\x08\x00", "declares 0 dimensions"),
        (b"\x00\x00\x08\x20" + b"\x00" * 200, "declares 32 dimensions"),
        (GOOD[:10], "truncated IDX header"),
        (GOOD[:-1], "truncated"),
        (GOOD + b"\x00", "trailing bytes"),
        (b"\x00\x00\x08\x03" + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1), "over the"),
        (b"\x00\x00\x0e\x01" + struct.pack(">I", 2**31), "over the"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_hostile_headers(tmp_path: Path, blob: bytes, message: str, gz: bool) -> None:
    path = tmp_path / "bad"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_corrupt_and_truncated_gzip(tmp_path: Path) -> None:
    packed = gzip.compress(GOOD)
    (tmp_path / "cut").write_bytes(packed[: len(packed) // 2])
    (tmp_path / "bits").write_bytes(packed[:12] + bytes(b ^ 0xFF for b in packed[12:]))
    for name in ("cut", "bits"):
        with pytest.raises(DataError, match="cannot read IDX file|truncated"):
            read_idx(tmp_path / name)


def test_max_bytes_cap(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(GOOD)
    with pytest.raises(DataError, match="over the 10-byte limit"):
        read_idx(tmp_path / "a", max_bytes=10)


def _write(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((3, 4, 4), np.uint8), np.zeros(2, np.uint8), "3 images but"),
        (np.zeros((3, 4, 4), np.uint8), np.array([0, 10, 1], np.uint8), "label 10 out of range"),
        (np.zeros((3, 16), np.uint8), np.zeros(3, np.uint8), "expected uint8 images"),
        (np.zeros((3, 4, 4), np.uint8), np.zeros((3, 1), np.uint8), "expected uint8 labels"),
    ],
)
def test_inconsistent_pair(tmp_path: Path, images: np.ndarray, labels: np.ndarray, message: str) -> None:
    _write(tmp_path, "train-images-idx3-ubyte", idx_bytes(images))
    _write(tmp_path, "train-labels-idx1-ubyte", idx_bytes(labels))
    with pytest.raises(DataError, match=message):
        load_idx_dataset("mnist", root=tmp_path)


def test_int_images_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "train-images-idx3-ubyte", idx_bytes(np.zeros((2, 4, 4), np.int32), 0x0C))
    _write(tmp_path, "train-labels-idx1-ubyte", idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(DataError, match="expected uint8 images"):
        load_idx_dataset("mnist", root=tmp_path)


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"apt-get install dataset-fashion-mnist.*--data-dir") as info:
        load_idx_dataset("fashion-mnist", root=tmp_path / "nowhere")
    assert "\n" not in str(info.value) and "FashionMNIST/raw" in str(info.value)
    with pytest.raises(DatasetNotFoundError, match="--data-dir"):
        load_idx_dataset("mnist", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="no default location"):
        load_idx_dataset("mnist")
    # Images without labels is still "not found", not a crash.
    write_split(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError):
        load_idx_dataset("mnist", root=tmp_path)
    assert issubclass(DatasetNotFoundError, DataError) and issubclass(DataError, FzpackError)


def test_bad_name_and_split() -> None:
    with pytest.raises(DataError, match="unknown IDX dataset"):
        load_idx_dataset("cifar10")
    with pytest.raises(DataError, match="unknown split"):
        load_idx_dataset("mnist", root="/", split="val")


def test_real_fashion_mnist_if_installed() -> None:
    root = Path("/usr/share/datasets/fashion-mnist")
    if not (root / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("dataset-fashion-mnist not installed")
    x, y = load_idx_dataset("fashion-mnist", split="test")
    assert x.shape == (10_000, 1, 28, 28) and torch.equal(torch.bincount(y), torch.full((10,), 1000))


def test_normalize() -> None:
    x = torch.tensor([[0, 255]], dtype=torch.uint8)
    assert torch.equal(normalize(x), torch.tensor([[0.0, 1.0]]))
    mean, std = DATASET_STATS["mnist"]
    assert torch.allclose(normalize(x, dataset="mnist"), (torch.tensor([[0.0, 1.0]]) - mean) / std)
    assert torch.allclose(normalize(x, 0.5, 0.25), torch.tensor([[-2.0, 2.0]]))
    assert normalize(x, dataset="fashion-mnist").dtype == torch.float32
    assert torch.equal(normalize(torch.tensor([0.5])), torch.tensor([0.5]))  # float input: not rescaled
    with pytest.raises(DataError, match="std must be positive"):
        normalize(x, 0.0, 0.0)


def test_synthetic_is_deterministic_and_mnist_shaped() -> None:
    before = torch.random.get_rng_state()
    x1, y1 = make_synthetic(50, seed=3)
    x2, y2 = make_synthetic(50, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (50, 1, 28, 28) and x1.dtype == torch.uint8 and y1.dtype == torch.int64
    assert torch.equal(torch.bincount(y1), torch.full((10,), 5))
    x3, _ = make_synthetic(50, seed=4)
    xt, _ = make_synthetic(50, seed=3, split="test")
    assert not torch.equal(x1, x3) and not torch.equal(x1, xt)
    xc, yc = make_synthetic(8, seed=0, num_classes=3, in_channels=3, image_size=32)
    assert xc.shape == (8, 3, 32, 32) and int(yc.max()) <= 2
    with pytest.raises(DataError):
        make_synthetic(4, split="val")


def test_synthetic_classes_are_separable() -> None:
    # Same seed, other split: nearest-prototype (class mean of train) classifies test well.
    x, y = make_synthetic(200, seed=1)
    xt, yt = make_synthetic(100, seed=1, split="test")
    means = torch.stack([normalize(x)[y == c].mean(0) for c in range(10)]).flatten(1)
    pred = torch.cdist(normalize(xt).flatten(1), means).argmin(1)
    assert (pred == yt).float().mean() > 0.9

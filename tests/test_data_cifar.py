"""CIFAR-10/100 binary reader on small generated files: layouts, labels, hostile sizes, missing data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fzpack.data import DataError, DatasetNotFoundError, find_cifar_files, load_cifar, load_dataset

PIXELS = 3 * 32 * 32


def records(n: int, label_cols: list[np.ndarray], seed: int) -> tuple[bytes, np.ndarray]:
    """``n`` records of label byte(s) + 3072 random pixels; returns the bytes and the pixel array."""
    rng = np.random.Generator(np.random.PCG64(seed))
    pixels = rng.integers(0, 256, (n, PIXELS), dtype=np.uint8)
    table = np.concatenate([np.asarray(c, dtype=np.uint8)[:, None] for c in label_cols] + [pixels], axis=1)
    return table.tobytes(), pixels.reshape(n, 3, 32, 32)


def write_cifar10(folder: Path, n: int = 3, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """data_batch_1..5.bin (n records each) and test_batch.bin (n + 1 records)."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list] = {"train": [[], []], "test": [[], []]}
    files = [(f"data_batch_{i}.bin", "train", n) for i in range(1, 6)] + [("test_batch.bin", "test", n + 1)]
    for k, (fname, split, count) in enumerate(files):
        labels = (np.arange(count) + k) % 10
        data, pixels = records(count, [labels], seed + k)
        (folder / fname).write_bytes(data)
        out[split][0].append(pixels)
        out[split][1].append(labels)
    return {s: (np.concatenate(x), np.concatenate(y)) for s, (x, y) in out.items()}


def write_cifar100(folder: Path, n: int = 5, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, split in enumerate(("train", "test")):
        fine = (np.arange(n) * 37 + k) % 100
        coarse = fine // 5
        data, pixels = records(n, [coarse, fine], seed + k)
        (folder / f"{split}.bin").write_bytes(data)
        out[split] = (pixels, coarse, fine)
    return out


def test_cifar10_roundtrip_channel_order_and_batch_order(tmp_path: Path) -> None:
    expected = write_cifar10(tmp_path / "cifar-10-batches-bin", n=3)
    for split, n in (("train", 15), ("test", 4)):
        x, y = load_cifar("cifar10", tmp_path, split)
        assert x.shape == (n, 3, 32, 32) and x.dtype == torch.uint8 and x.is_contiguous()
        assert y.shape == (n,) and y.dtype == torch.int64
        assert np.array_equal(x.numpy(), expected[split][0]) and np.array_equal(y.numpy(), expected[split][1])
    # Record layout: the first 1024 pixel bytes are the red plane, row-major.
    raw = (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").read_bytes()
    x, _ = load_cifar("cifar10", tmp_path, "train")
    assert bytes(x[0, 0].flatten().tolist()) == raw[1:1025]


@pytest.mark.parametrize(
    "sub", ["", "cifar-10-batches-bin", "cifar10/cifar-10-batches-bin", "CIFAR10", "cifar-10/cifar-10-batches-bin"]
)
def test_cifar10_layouts(tmp_path: Path, sub: str) -> None:
    expected = write_cifar10(tmp_path / sub)
    x, y = load_cifar("CIFAR-10", tmp_path, "test")
    assert np.array_equal(x.numpy(), expected["test"][0])
    # Pointing root at the folder itself also works.
    assert torch.equal(load_cifar("cifar10", tmp_path / sub, "test")[1], y)


@pytest.mark.parametrize("sub", ["cifar-100-binary", "", "cifar100/cifar-100-binary"])
def test_cifar100_fine_and_coarse(tmp_path: Path, sub: str) -> None:
    expected = write_cifar100(tmp_path / sub, n=6)
    for split in ("train", "test"):
        pixels, coarse, fine = expected[split]
        x, y_fine = load_cifar("cifar100", tmp_path, split)
        _, y_coarse = load_cifar("cifar100", tmp_path, split, label="coarse")
        assert np.array_equal(x.numpy(), pixels)
        assert np.array_equal(y_fine.numpy(), fine) and np.array_equal(y_coarse.numpy(), coarse)
    assert int(load_cifar("cifar100", tmp_path, "train")[1].max()) > 19  # really the fine column


def test_registry_load_dataset_cifar(tmp_path: Path) -> None:
    expected = write_cifar10(tmp_path / "cifar-10-batches-bin")
    x, y = load_dataset("cifar10", "train", data_dir=tmp_path)
    assert np.array_equal(x.numpy(), expected["train"][0]) and np.array_equal(y.numpy(), expected["train"][1])
    write_cifar100(tmp_path / "cifar-100-binary")
    assert load_dataset("cifar100", "test", str(tmp_path))[0].shape == (5, 3, 32, 32)


@pytest.mark.parametrize("size", [0, 3073 * 2 - 1, 3073 * 2 + 1, 3074])
def test_cifar10_bad_sizes(tmp_path: Path, size: int) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10(folder)
    (folder / "test_batch.bin").write_bytes(bytes(size))
    with pytest.raises(DataError, match="record size 3073") as err:
        load_cifar("cifar10", tmp_path, "test")
    assert not isinstance(err.value, DatasetNotFoundError)


def test_cifar100_bad_size_and_the_cifar10_file_confusion(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    write_cifar100(folder)
    (folder / "train.bin").write_bytes(bytes(3073 * 3))  # CIFAR-10-sized records
    with pytest.raises(DataError, match="record size 3074"):
        load_cifar("cifar100", tmp_path, "train")


@pytest.mark.parametrize(
    ("name", "cols", "match"),
    [
        ("cifar10", [[0, 10]], "label 10, out of range 0..9"),
        ("cifar100", [[0, 20], [0, 5]], "coarse label 20, out of range 0..19"),
        ("cifar100", [[0, 1], [99, 100]], "fine label 100, out of range 0..99"),
    ],
)
def test_labels_out_of_range(tmp_path: Path, name: str, cols: list[list[int]], match: str) -> None:
    data, _ = records(2, [np.array(c) for c in cols], seed=0)
    fname = "test_batch.bin" if name == "cifar10" else "test.bin"
    (tmp_path / fname).write_bytes(data)
    with pytest.raises(DataError, match=match):
        load_cifar(name, tmp_path, "test")


def test_missing_says_binary_version_and_where(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_cifar("cifar10", tmp_path, "train")
    msg = str(err.value)
    assert "binary version" in msg and "cifar-10-binary.tar.gz" in msg
    assert "cifar-10-batches-bin" in msg and str(tmp_path) in msg and "\n" not in msg
    with pytest.raises(DatasetNotFoundError, match="cifar-100-binary.tar.gz"):
        load_cifar("cifar100", tmp_path, "test")
    with pytest.raises(DatasetNotFoundError, match="no default location"):
        load_cifar("cifar10", None, "test")
    with pytest.raises(DatasetNotFoundError, match="binary version"):
        load_dataset("cifar10", "test")


def test_pickled_version_is_named_not_read(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04junk")
    with pytest.raises(DatasetNotFoundError, match="pickled python version at .*cifar-10-batches-py"):
        load_cifar("cifar10", tmp_path, "train")


def test_incomplete_train_split_names_missing_files(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10(folder)
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing data_batch_3\.bin"):
        load_cifar("cifar10", tmp_path, "train")
    assert len(find_cifar_files("cifar10", tmp_path, "test")) == 1  # the test split is still whole


def test_bad_arguments(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match="label kind"):
        load_cifar("cifar10", tmp_path, "test", label="coarse")
    with pytest.raises(DataError, match="unknown CIFAR dataset"):
        load_cifar("cifar1000", tmp_path, "test")
    with pytest.raises(DataError, match="unknown split"):
        load_cifar("cifar10", tmp_path, "val")

"""Reader for the *binary* version of CIFAR-10 and CIFAR-100, with strict size and label checks.

Alex Krizhevsky's page (https://www.cs.toronto.edu/~kriz/cifar.html) ships each data set in a
pickled python version and a binary version. fzpack reads only the binary one: unpickling
runs arbitrary code, and the binary records are trivial to validate. The formats are

* CIFAR-10 (``cifar-10-binary.tar.gz`` -> ``cifar-10-batches-bin/``): ``data_batch_1.bin`` ..
  ``data_batch_5.bin`` (train) and ``test_batch.bin``; each record is 1 label byte + 3072 pixel
  bytes (1024 red, 1024 green, 1024 blue, row-major 32 x 32);
* CIFAR-100 (``cifar-100-binary.tar.gz`` -> ``cifar-100-binary/``): ``train.bin`` and
  ``test.bin``; each record is 2 label bytes (coarse 0..19, fine 0..99) + 3072 pixel bytes.

Accepted roots: the directory holding the ``.bin`` files, its parent (``ROOT/cifar-10-batches-bin``),
and torchvision-like per-dataset folders (``ROOT/cifar10/...``, ``ROOT/CIFAR10/...``, ``ROOT/cifar-10/...``).
CIFAR cannot be downloaded by fzpack; a missing data set raises `DatasetNotFoundError` whose
message says which archive to get and where to extract it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fzpack.data.idx import DataError, DatasetNotFoundError

__all__ = ["CIFAR_STATS", "find_cifar_files", "load_cifar"]

# Per-channel (R, G, B) mean / std of the training split after scaling to [0, 1]; the usual
# published values (the std is the true per-pixel std, not the often-copied 0.2023/0.1994/0.2010).
CIFAR_STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_PIXELS = 3 * 32 * 32
_LABEL_BYTES = {"cifar10": 1, "cifar100": 2}
# Label columns of one record and their class counts; CIFAR-100 stores coarse first, then fine.
_LABEL_RANGES = {"cifar10": {"fine": (0, 10)}, "cifar100": {"coarse": (0, 20), "fine": (1, 100)}}
_FILES = {
    "cifar10": {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
    "cifar100": {"train": ("train.bin",), "test": ("test.bin",)},
}
_INNER = {"cifar10": "cifar-10-batches-bin", "cifar100": "cifar-100-binary"}
_PICKLED = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_PREFIXES = {"cifar10": (".", "cifar10", "CIFAR10", "cifar-10"), "cifar100": (".", "cifar100", "CIFAR100", "cifar-100")}
_ARCHIVE = {"cifar10": "cifar-10-binary.tar.gz", "cifar100": "cifar-100-binary.tar.gz"}
_MAX_BYTES = 1 << 30  # 1 GiB: about 6x the largest real file (CIFAR-100 train.bin, 154 MB)


def _canonical_name(name: str) -> str:
    key = name.lower().replace("_", "").replace("-", "")
    if key not in _FILES:
        raise DataError(f"unknown CIFAR dataset {name!r}; use 'cifar10' or 'cifar100'")
    return key


def _candidate_dirs(name: str, base: Path) -> list[Path]:
    # Inner folder first: it is what extracting the official archive into ROOT produces.
    return [base / prefix / inner for prefix in _PREFIXES[name] for inner in (_INNER[name], ".")]


def find_cifar_files(name: str, root: str | os.PathLike[str] | None, split: str) -> list[Path]:
    """Locate the binary record files of one CIFAR split.

    Args:
        name: ``"cifar10"`` or ``"cifar100"`` (``"CIFAR-10"`` etc. also accepted).
        root: a directory in any layout listed in the module docstring; there is no default.
        split: ``"train"`` or ``"test"``.

    Returns:
        The split's ``.bin`` files, all from one directory, in record order (batches 1..5).

    Raises:
        DatasetNotFoundError: files missing; the message names the archive and where it goes.
        DataError: unknown name or split.

    Example:
        >>> find_cifar_files("cifar10", "/data", "test")  # doctest: +SKIP
        [PosixPath('/data/cifar-10-batches-bin/test_batch.bin')]
    """
    name = _canonical_name(name)
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    wanted = _FILES[name][split]
    how = (
        f"fzpack reads the CIFAR binary version (not the pickled python one) and cannot download it: "
        f"get {_ARCHIVE[name]} from https://www.cs.toronto.edu/~kriz/cifar.html, extract it so that "
        f"DIR/{_INNER[name]}/{wanted[0]} exists, and pass --data-dir DIR (root=DIR)"
    )
    if root is None:
        raise DatasetNotFoundError(f"{name}: no default location; {how}")
    base = Path(root)
    candidates = _candidate_dirs(name, base)
    for folder in candidates:
        present = [folder / f for f in wanted if (folder / f).is_file()]
        if len(present) == len(wanted):
            return present
        if present:
            # A half-extracted archive is a user error worth naming precisely.
            missing = ", ".join(f for f in wanted if not (folder / f).is_file())
            raise DatasetNotFoundError(f"{name} {split} split incomplete in {folder}: missing {missing}; {how}")
    pickled = [p for p in (base / pre / _PICKLED[name] for pre in _PREFIXES[name]) if p.is_dir()]
    found_py = f" (found the pickled python version at {pickled[0]}, which fzpack does not read)" if pickled else ""
    looked = ", ".join(dict.fromkeys(str(c) for c in candidates))  # pathlib folds "." so dedupe
    raise DatasetNotFoundError(f"{name} {split} split not found (looked for {wanted[0]} in {looked}){found_py}; {how}")


def _read_records(path: Path, name: str) -> np.ndarray:
    """One ``.bin`` file as an ``N x record`` uint8 array, after size and label checks."""
    record = _LABEL_BYTES[name] + _PIXELS
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise DataError(f"{path}: {size} bytes, over the {_MAX_BYTES}-byte limit for a CIFAR file")
        if size == 0 or size % record:
            raise DataError(
                f"{path}: size {size} is not a positive multiple of the {name} record size {record} "
                f"({_LABEL_BYTES[name]} label byte(s) + {_PIXELS} pixels); is this the {name} binary version?"
            )
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read CIFAR file: {exc}") from None
    if data.size != size:  # the file changed under us
        raise DataError(f"{path}: read {data.size} bytes, expected {size}")
    records = data.reshape(-1, record)
    for kind, (column, classes) in _LABEL_RANGES[name].items():
        labels = records[:, column]
        bad = np.flatnonzero(labels >= classes)
        if bad.size:
            raise DataError(
                f"{path}: record {int(bad[0])} has {kind} label {int(labels[bad[0]])}, "
                f"out of range 0..{classes - 1}"
            )
    return records


def load_cifar(
    name: str,
    root: str | os.PathLike[str] | None,
    split: str,
    *,
    label: str = "fine",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of CIFAR-10 / CIFAR-100 (binary version) as tensors.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: directory in any layout listed in the module docstring (required: no default).
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        label: CIFAR-100 only: ``"fine"`` (100 classes, default) or ``"coarse"`` (20
            superclasses). CIFAR-10 has a single label, called ``"fine"`` here.

    Returns:
        ``(images, labels)``: uint8 tensor ``N x 3 x 32 x 32`` (RGB) and int64 tensor ``N``.

    Raises:
        DatasetNotFoundError: files missing (the message says how to get them).
        DataError: a file whose size is not a multiple of the record size, or a label out of range.

    Example:
        >>> x, y = load_cifar("cifar100", "/data", "test", label="coarse")  # doctest: +SKIP
        >>> x.shape, int(y.max())  # doctest: +SKIP
        (torch.Size([10000, 3, 32, 32]), 19)
    """
    name = _canonical_name(name)
    if label not in _LABEL_RANGES[name]:
        raise DataError(f"{name}: unknown label kind {label!r}; use one of {sorted(_LABEL_RANGES[name])}")
    column = _LABEL_RANGES[name][label][0]
    images, labels = [], []
    for path in find_cifar_files(name, root, split):
        records = _read_records(path, name)
        # Column slices of the record array are strided; copy them into contiguous buffers.
        images.append(np.ascontiguousarray(records[:, _LABEL_BYTES[name] :]))
        labels.append(records[:, column].astype(np.int64))
        del records
    x = np.concatenate(images) if len(images) > 1 else images[0]
    y = np.concatenate(labels) if len(labels) > 1 else labels[0]
    return torch.from_numpy(x.reshape(-1, 3, 32, 32)), torch.from_numpy(y)

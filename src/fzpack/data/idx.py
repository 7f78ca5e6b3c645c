"""IDX reader for MNIST and Fashion-MNIST (raw or gzip files), with strict header checks.

The IDX format (LeCun's MNIST page) is a 4-byte magic ``00 00 <dtype> <ndim>``, then ``ndim``
big-endian uint32 dimensions, then the data in C order, big-endian. Files found in the wild
come raw or gzip-compressed and sit in several layouts:

* a plain directory: ``ROOT/train-images-idx3-ubyte.gz`` (the Debian ``dataset-fashion-mnist``
  package installs this under ``/usr/share/datasets/fashion-mnist``);
* torchvision's layout: ``ROOT/FashionMNIST/raw/...`` or ``ROOT/MNIST/raw/...``;
* a per-dataset subdirectory ``ROOT/fashion-mnist/...`` / ``ROOT/mnist/...``;
* file names with a dot instead of the dash (``train-images.idx3-ubyte``), as some unzippers write.

Every file is treated as untrusted: the header must be consistent with the file length, the
declared size is capped before anything is allocated, and any violation raises a one-line
`DataError`.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from fzpack.errors import FzpackError

__all__ = [
    "DataError",
    "DatasetNotFoundError",
    "DATASET_STATS",
    "DEFAULT_ROOTS",
    "read_idx",
    "find_idx_files",
    "load_idx_dataset",
    "normalize",
]


class DataError(FzpackError):
    """A dataset file is missing, malformed or inconsistent."""


class DatasetNotFoundError(DataError):
    """The dataset's files are not where we looked; the message says how to get them."""


# Per-pixel mean / std of the training split after scaling to [0, 1]. MNIST: the usual
# published values; Fashion-MNIST: measured on the 60k training images of the Debian package.
DATASET_STATS: dict[str, tuple[float, float]] = {
    "mnist": (0.1307, 0.3081),
    "fashion-mnist": (0.2860, 0.3530),
}

DEFAULT_ROOTS: dict[str, Path | None] = {
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
    "mnist": None,  # no distribution package ships it, and fzpack never downloads
}

_SUBDIRS = {
    "fashion-mnist": (".", "FashionMNIST/raw", "fashion-mnist"),
    "mnist": (".", "MNIST/raw", "mnist"),
}
_STEMS = {
    "train": ("train-images", "train-labels"),
    "test": ("t10k-images", "t10k-labels"),
}
_NUM_CLASSES = 10

# IDX type byte -> numpy dtype (big-endian as stored).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_MAX_NDIM = 8
_DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: 20x the largest real MNIST-family file
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = _DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read one IDX file (raw or gzip, detected from its first bytes) into a native-endian array.

    Args:
        path: the file.
        max_bytes: refuse files whose header declares more payload than this (guards against
            a tiny hostile header or gzip bomb requesting gigabytes).

    Returns:
        numpy array with the header's shape, native byte order.

    Raises:
        DataError: unreadable file, bad magic, unknown type, size mismatch, corrupt gzip.

    Example:
        >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
        (10000,)
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _read_idx_stream(stream, path, None, max_bytes)
            return _read_idx_stream(raw, path, path.stat().st_size, max_bytes)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated gzip stream raises EOFError.
        raise DataError(f"{path}: cannot read IDX file: {exc}") from None


def _read_idx_stream(stream: BinaryIO, path: Path, file_size: int | None, max_bytes: int) -> np.ndarray:
    head = _read_exact(stream, 4)
    if len(head) < 4:
        raise DataError(f"{path}: not an IDX file (shorter than the 4-byte magic)")
    if head[0] != 0 or head[1] != 0:
        raise DataError(f"{path}: not an IDX file (magic {head.hex()} does not start with 0000)")
    dtype = _IDX_DTYPES.get(head[2])
    if dtype is None:
        raise DataError(f"{path}: unknown IDX element type 0x{head[2]:02x}")
    ndim = head[3]
    if not 1 <= ndim <= _MAX_NDIM:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions (1..{_MAX_NDIM} supported)")
    dims_raw = _read_exact(stream, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    header_len = 4 + 4 * ndim
    # Python ints do not overflow, so this product is the true declared size.
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise DataError(f"{path}: IDX header declares {nbytes} bytes of data, over the {max_bytes}-byte limit")
    if file_size is not None and file_size != header_len + nbytes:
        what = "truncated" if file_size < header_len + nbytes else "has trailing bytes"
        raise DataError(
            f"{path}: IDX file {what}: header {shape} needs {header_len + nbytes} bytes, file has {file_size}"
        )
    # Read one byte more than declared to detect trailing data inside a gzip stream.
    data = _read_exact(stream, nbytes + 1)
    if len(data) != nbytes:
        what = "truncated" if len(data) < nbytes else "has trailing bytes"
        raise DataError(f"{path}: IDX data {what}: header {shape} needs {nbytes} bytes of data")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_exact(stream: BinaryIO, n: int) -> bytearray:
    """Read up to ``n`` bytes in chunks, so memory follows the real data, not the header's claim."""
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(min(_CHUNK, n - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def find_idx_files(name: str, root: str | os.PathLike[str] | None, split: str) -> tuple[Path, Path]:
    """Locate the image and label IDX files of one split.

    Args:
        name: ``"fashion-mnist"`` or ``"mnist"``.
        root: a directory in any supported layout; None uses `DEFAULT_ROOTS`.
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(images_path, labels_path)``, both from the same directory.

    Raises:
        DatasetNotFoundError: with a hint on how to obtain the files.

    Example:
        >>> find_idx_files("fashion-mnist", None, "test")  # doctest: +SKIP
        (PosixPath('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz'), ...)
    """
    name = _canonical_name(name)
    if split not in _STEMS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    base = Path(root) if root is not None else DEFAULT_ROOTS[name]
    if base is None:
        raise DatasetNotFoundError(
            f"{name}: no default location; pass root= (CLI: --data-dir DIR) pointing at a directory "
            "with train-images-idx3-ubyte[.gz] etc. (fzpack does not download datasets)"
        )
    img_stem, lbl_stem = _STEMS[split]
    for sub in _SUBDIRS[name]:
        folder = base / sub
        images = _first_existing(folder, img_stem, 3)
        labels = _first_existing(folder, lbl_stem, 1)
        if images is not None and labels is not None:
            return images, labels
    looked = ", ".join(str(base / s) for s in _SUBDIRS[name])
    how = (
        "install it with `apt-get install dataset-fashion-mnist` or pass --data-dir DIR"
        if name == "fashion-mnist"
        else "pass --data-dir DIR (root=) to a directory holding the MNIST IDX files"
    )
    raise DatasetNotFoundError(
        f"{name} {split} split not found (looked for {img_stem}-idx3-ubyte[.gz] and "
        f"{lbl_stem}-idx1-ubyte[.gz] in {looked}): {how}"
    )


def _first_existing(folder: Path, stem: str, ndim: int) -> Path | None:
    # Uncompressed first: torchvision's raw/ keeps both, and the raw file reads faster.
    for suffix in ("", ".gz"):
        for sep in ("-", "."):
            candidate = folder / f"{stem}{sep}idx{ndim}-ubyte{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _canonical_name(name: str) -> str:
    key = name.lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist"}.get(key, key)
    if key not in _SUBDIRS:
        raise DataError(f"unknown IDX dataset {name!r}; use 'fashion-mnist' or 'mnist'")
    return key


def load_idx_dataset(
    name: str = "fashion-mnist",
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of MNIST / Fashion-MNIST as tensors.

    Args:
        name: ``"fashion-mnist"`` (default) or ``"mnist"``.
        root: directory in any layout listed in the module docstring; None uses the Debian
            package location for Fashion-MNIST.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).

    Returns:
        ``(images, labels)``: uint8 tensor ``N x 1 x H x W`` (28 x 28 for the real data) and an
        int64 tensor ``N`` with values in 0..9.

    Raises:
        DatasetNotFoundError: files missing (the message says how to get them).
        DataError: malformed files, or images and labels that do not belong together.

    Example:
        >>> x, y = load_idx_dataset("fashion-mnist", split="test")  # doctest: +SKIP
        >>> x.shape, y.dtype  # doctest: +SKIP
        (torch.Size([10000, 1, 28, 28]), torch.int64)
    """
    images_path, labels_path = find_idx_files(name, root, split)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"{images_path}: expected uint8 images N x H x W, got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path}: expected uint8 labels of shape N, got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path}: {images.shape[0]} images but {labels_path.name} has {labels.shape[0]} labels")
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        raise DataError(f"{labels_path}: label {int(labels.max())} out of range 0..{_NUM_CLASSES - 1}")
    # read_idx's array is backed by a private writable buffer, so no copy is needed.
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def normalize(
    images: torch.Tensor,
    mean: float | None = None,
    std: float | None = None,
    *,
    dataset: str | None = None,
) -> torch.Tensor:
    """Scale uint8 images to float32 in [0, 1], then standardise with ``(x - mean) / std``.

    Args:
        images: uint8 tensor (any shape), or a float tensor already in [0, 1].
        mean, std: explicit statistics; they override ``dataset``.
        dataset: take the statistics from `DATASET_STATS` (``"mnist"`` / ``"fashion-mnist"``).
            With neither given, the images are only scaled to [0, 1].

    Returns:
        float32 tensor of the same shape.

    Example:
        >>> normalize(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), 0.5, 0.5).unique().item()
        1.0
    """
    x = images.to(torch.float32)
    if images.dtype == torch.uint8:
        x = x / 255.0
    if dataset is not None:
        ref_mean, ref_std = DATASET_STATS[_canonical_name(dataset)]
        mean = ref_mean if mean is None else mean
        std = ref_std if std is None else std
    if mean is not None:
        x = x - mean
    if std is not None:
        if std <= 0:
            raise DataError(f"normalize: std must be positive, got {std}")
        x = x / std
    return x

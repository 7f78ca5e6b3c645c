"""The README's main job: train a FreezeNet, pack it, restore it, prove it is the same network.

A short, real run of the trainer (`fzpack.train`): LeNet-5-Caffe initialised from the seed
(Xavier-normal), FreezeNet mask from one Fashion-MNIST batch (Algorithm 1, q = 0.99), SGD on
the trained entries only with the paper's settings (lr 0.1, momentum 0.9, weight decay 5e-4,
batch 100, 9/1 train/validation split, best validation epoch kept) for ``steps`` steps, then
compress -> restore -> verify bit-exactness -> evaluate the network rebuilt from the `.fzp`.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import zstandard
from safetensors.torch import save as st_save

from fzpack.compress import compress
from fzpack.data.datasets import dataset_info
from fzpack.data.idx import DatasetNotFoundError, find_idx_files
from fzpack.equality import tree_differences
from fzpack.progress import Progress
from fzpack.restore import restore
from fzpack.train import TrainConfig, train
from fzpack.train.metrics import evaluate_file

SYNTHETIC_FALLBACK = "synthetic (Fashion-MNIST not found: apt-get install dataset-fashion-mnist)"


@dataclass
class DemoReport:
    dataset: str
    steps: int
    q: float
    trained_weights: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    accuracy_before: float = 0.0
    accuracy_restored: float = 0.0
    bit_identical: bool = False
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    epochs: int = 0
    val_accuracy: float | None = None
    train_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dataset(data_dir: str | None) -> tuple[str, str]:
    """(trainer data set name, name to report): Fashion-MNIST, or the synthetic stand-in."""
    try:
        for split in ("train", "test"):
            find_idx_files("fashion-mnist", data_dir, split)
        return "fashion-mnist", "fashion-mnist"
    except DatasetNotFoundError:
        return "synthetic", SYNTHETIC_FALLBACK


def run_demo(workdir: str | Path, *, steps: int = 600, rate: float = 0.99, seed: int = 2026, data_dir: str | None = None,
             progress: bool | str | None = True) -> DemoReport:
    """Train a small FreezeNet with `fzpack.train`, then compress, restore, verify and compare sizes.

    Args:
        workdir: where model.pt, metrics.json, model.fzp go.
        steps: optimizer steps (batch 100; one Fashion-MNIST epoch at the 9/1 split is 540).
        rate: freezing rate q.
        seed: the checkpoint's seed (init, mask); the data order derives from it.
        data_dir: Fashion-MNIST directory (default: the Debian package's).
        progress: a `fzpack.progress` setting: True/"auto" shows the trainer's bar on a terminal
            and otherwise one stderr line per epoch and per stage; "bar", "lines" force one;
            False is silent.

    Returns:
        A :class:`DemoReport` with the size table and the accuracies before and after packing.

    Example:
        >>> r = run_demo("fzpack-demo")
        >>> r.bit_identical, r.accuracy_before == r.accuracy_restored
        (True, True)
    """
    t0 = time.perf_counter()
    stages = Progress(progress)  # the stage lines; the trainer makes the same choice for its epochs
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    dataset, shown = _dataset(data_dir)
    size = 6000 if dataset == "synthetic" else dataset_info(dataset).train_size
    info = dataset_info(dataset)
    per_epoch = math.ceil((size - round(size * 0.1)) / info.default_batch_size)  # 540 on Fashion-MNIST
    config = TrainConfig(method="freezenet", arch="lenet5-caffe", dataset=dataset, data_dir=data_dir,
                         synthetic_size=size if dataset == "synthetic" else None, freeze_rate=rate, seed=seed,
                         val_split=0.1, epochs=max(1, math.ceil(steps / per_epoch)), max_steps=steps, save_every=0,
                         progress=progress)
    pt, fzp = work / "model.pt", work / "model.fzp"
    say = stages.line
    say(f"train: FreezeNet lenet5-caffe on {shown}, q = {rate}, {steps} steps -> {pt}")
    result = train(config, pt)
    ckpt = result.checkpoint
    t_train = time.perf_counter() - t0
    rep = compress(pt, fzp)
    say(f"compress: {fzp}, {rep.output_bytes:,} bytes")
    back = restore(fzp)
    diffs = tree_differences(ckpt, back)
    say(f"restore: {'bit-identical to' if not diffs else 'DIFFERS from'} {pt}")
    restored = evaluate_file(fzp, dataset, data_dir=data_dir)  # the network rebuilt from the .fzp alone
    say(f"evaluate: test accuracy {restored['accuracy']:.4f} from {fzp}")
    masks = {n: t["mask"] for n, t in ckpt["fzpack"]["tensors"].items()}
    m = result.metrics
    report = DemoReport(dataset=shown, steps=m["steps"], q=rate, trained_weights=m["trained_weights"],
                        bit_identical=not diffs, accuracy_before=m["test_accuracy"], accuracy_restored=restored["accuracy"],
                        files={"checkpoint": str(pt), "fzp": str(fzp), "metrics": str(result.metrics_path)},
                        epochs=m["epochs_run"], val_accuracy=m["val_accuracy"], train_seconds=t_train)
    report.rows = size_rows(ckpt, rep.output_bytes, rep.dense_fp32_bytes, masks)
    report.seconds = time.perf_counter() - t0
    return report


def size_rows(ckpt: dict, fzp_bytes: int, dense_fp32: int, masks: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    """Each representation actually produced, its size and factor vs dense fp32."""
    sd = ckpt["state_dict"]
    buf = io.BytesIO()
    torch.save(sd, buf)
    st = st_save({k: v.contiguous() for k, v in sd.items()})
    zst = zstandard.ZstdCompressor(level=19).compress(st)
    k = sum(int(m.sum()) for m in masks.values())
    others = sum(v.numel() for n, v in sd.items() if n not in masks)
    paper = 4 * (k + others)
    rows = [("dense torch.save", len(buf.getvalue()), True), ("safetensors", len(st), True),
            ("safetensors + zstd-19", len(zst), True), ("paper convention (trained fp32, no mask)", paper, False),
            (".fzp (fzpack, lossless)", fzp_bytes, True)]
    return [{"representation": r, "bytes": b, "factor": dense_fp32 / b, "restorable": ok} for r, b, ok in rows]

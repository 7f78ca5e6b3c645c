"""Evaluation (accuracy and loss, sharded over ranks) and the ``metrics.json`` record of a run.

Evaluation always runs in float32, also when training used AMP, so the accuracy recorded for a
run is the accuracy `fzpack evaluate` reproduces from the saved `model.pt` or `.fzp` file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fzpack.atomic import write_atomic
from fzpack.checkpoint import frozen_info
from fzpack.data.datasets import dataset_info
from fzpack.data.loader import Batches
from fzpack.errors import FzpackError

__all__ = ["EvalResult", "evaluate", "evaluate_file", "write_metrics"]

METRICS_VERSION = 1


@dataclass
class EvalResult:
    """Accuracy and mean cross-entropy over ``n`` images."""

    accuracy: float
    loss: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, mean: Any, std: Any,
             batch_size: int = 1000, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1,
             all_reduce: Any = None) -> EvalResult:
    """Top-1 accuracy and mean cross-entropy of ``model`` on uint8 ``images``, in eval mode.

    In a distributed run each rank evaluates every ``world_size``-th image (no padding, so no
    image counts twice) and ``all_reduce`` sums the counts; every rank gets the same result.
    The model's train/eval flag is restored afterwards.

    Args:
        model: the network (plain or converted; not the DDP wrapper).
        images, labels: uint8 ``N x C x H x W`` and int64 ``N``.
        mean, std: the data set's normalisation.
        batch_size: images per forward pass.
        device: where the model lives.
        rank, world_size: this process's shard.
        all_reduce: ``f(tensor) -> summed tensor`` over ranks (`DistContext.all_reduce_sum`).

    Returns:
        An `EvalResult` (accuracy 0 for an empty set).

    Example:
        >>> evaluate(model, x_test, y_test, mean=info.mean, std=info.std).accuracy
        0.8356
    """
    was_training = model.training
    model.eval()
    try:
        shard = slice(rank, None, world_size)
        batches = Batches(images[shard], labels[shard], batch_size=batch_size, mean=mean, std=std, shuffle=False,
                          seed=0, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for x, y in batches:
            out = model(x).float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
        totals = torch.stack([correct.cpu(), loss_sum.cpu(), torch.tensor(float(len(batches.labels)), dtype=torch.float64)])
        if all_reduce is not None and world_size > 1:
            totals = all_reduce(totals)
    finally:
        model.train(was_training)
    n = int(totals[2])
    return EvalResult(accuracy=float(totals[0]) / n if n else 0.0, loss=float(totals[1]) / n if n else 0.0, n=n)


def write_metrics(path: str | os.PathLike, metrics: Mapping[str, Any]) -> None:
    """Write ``metrics`` as indented JSON, atomically (never a partial file).

    Args:
        path: destination, e.g. ``run/metrics.json``.
        metrics: JSON-serialisable record (see `fzpack.train.loop.train`).
    """
    text = json.dumps(dict(metrics), indent=2, sort_keys=False, default=str) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def evaluate_file(src: str | os.PathLike, dataset: str | None = None, *, data_dir: str | os.PathLike | None = None,
                  device: str | torch.device = "cpu", batch_size: int = 1000, split: str = "test") -> dict[str, Any]:
    """Accuracy of a saved model (`model.pt` or, straight from the compact file, `model.fzp`).

    The network is rebuilt with `fzpack.load_model` (a `.fzp` regenerates its frozen weights on
    ``device``). The data set defaults to the one recorded in the checkpoint's metadata, and so
    does the synthetic task (``synthetic_seed``), so a run is evaluated on what it was tested on.

    Args:
        src: checkpoint path (`.pt` of the convention, or `.fzp`).
        dataset: data set name; None reads ``fzpack.metadata["dataset"]``.
        data_dir: where the data files are.
        device: where to evaluate.
        batch_size: images per forward pass.
        split: ``test`` (default) or ``train``.

    Returns:
        ``{"model", "dataset", "split", "accuracy", "loss", "n", "method", "q", "seconds"}``.

    Example:
        >>> evaluate_file("model.fzp")["accuracy"]
        0.8356
    """
    import time

    from fzpack.loading import load_model, read_any
    from fzpack.train.data import load_eval_split

    t0 = time.perf_counter()
    ckpt = read_any(src, device)
    meta = frozen_info(ckpt)
    metadata = meta.metadata if meta is not None else {}
    name = dataset or metadata.get("dataset")
    if not name:
        raise FzpackError("the checkpoint does not record its data set; pass --dataset")
    info = dataset_info(str(name))
    synthetic_seed = int(metadata.get("synthetic_seed", 0)) if info.name == "synthetic" else 0
    model = load_model(ckpt, device=device)
    x, y = load_eval_split(info.name, data_dir, split=split, synthetic_seed=synthetic_seed)
    try:
        res = evaluate(model, x, y, mean=info.mean, std=info.std, batch_size=batch_size, device=device)
    except (RuntimeError, ValueError) as e:  # e.g. a CIFAR model given MNIST images
        raise FzpackError(f"the model cannot run on {info.name} images {tuple(x.shape[1:])}: {str(e).splitlines()[0]}") from e
    q = None
    if meta is not None and meta.tensors:  # q from the masks themselves (FreezeNet section 3.3)
        q = 1.0 - sum(int(f.mask.sum()) for f in meta.tensors.values()) / sum(f.mask.numel() for f in meta.tensors.values())
    return {"model": str(src), "dataset": info.name, "split": split, **res.to_dict(),
            "method": meta.method if meta is not None else None, "q": q, "seconds": time.perf_counter() - t0}

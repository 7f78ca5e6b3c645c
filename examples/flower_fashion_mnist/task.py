"""Data, partitions, models and local training shared by the ServerApp and the ClientApp.

Fashion-MNIST comes from ``fzpack.data`` (the Debian package ``dataset-fashion-mnist`` at
/usr/share/datasets/fashion-mnist, or ``data-dir``); where it is absent the run falls back to
fzpack's synthetic MNIST-shaped task and says so. The training split is divided among the
clients IID or by a Dirichlet(alpha) label distribution, both seeded, so every process computes
the same partition from the run config alone.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fzpack
from fzpack.data.datasets import dataset_info, load_dataset
from fzpack.data.idx import DatasetNotFoundError
from fzpack.data.loader import Batches
from fzpack.families import get_family
from fzpack.freeze import frozen_state
from fzpack.models.registry import create_model
from fzpack.train.metrics import EvalResult, evaluate

FZPACK_METHODS = ("freezenet", "dctps")
METHODS = (*FZPACK_METHODS, "dense")
_CACHE: dict[tuple, Any] = {}
log = logging.getLogger("fzpack-flower-example")


def cfg_str(cfg: Any, key: str, default: str = "") -> str:
    v = cfg.get(key, default)
    return str(v)


def load(run_config: Any, split: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(uint8 images, labels, data set name actually used) for ``split``, cut to the configured size."""
    name = cfg_str(run_config, "dataset", "fashion-mnist")
    data_dir = cfg_str(run_config, "data-dir") or None
    size = int(run_config.get("train-size" if split == "train" else "test-size", 0))
    seed = int(run_config.get("seed", 0))
    key = (name, data_dir, split, size, seed)
    if key not in _CACHE:
        try:
            x, y = load_dataset(name, split, data_dir, synthetic_size=size or None, seed=seed)
            used = dataset_info(name).name
        except DatasetNotFoundError as e:
            log.warning("%s not found (%s); using the synthetic data set instead", name, str(e).splitlines()[0])
            x, y = load_dataset("synthetic", split, synthetic_size=size or None, seed=seed)
            used = "synthetic"
        if size and size < len(y):  # a seeded subset (the same in every process)
            g = torch.Generator().manual_seed(seed * 7919 + (1 if split == "train" else 2))
            idx = torch.randperm(len(y), generator=g)[:size].sort().values
            x, y = x[idx], y[idx]
        _CACHE[key] = (x, y, used)
    return _CACHE[key]


def partition(labels: torch.Tensor, num_partitions: int, split: str, *, alpha: float = 0.5, seed: int = 0,
              min_size: int = 1) -> list[np.ndarray]:
    """Indices of each client's examples: ``iid`` (a seeded shuffle cut in equal parts) or ``dirichlet``.

    Dirichlet: for every class, the fractions of its examples that go to each client are drawn from
    Dirichlet(alpha, ..., alpha) (alpha = 0.5: strongly skewed label mixes); redrawn (up to 100
    times, same seed stream) until every client has at least ``min_size`` examples.
    """
    y = labels.numpy()
    rng = np.random.default_rng(seed)
    if num_partitions < 1:
        raise ValueError("num_partitions must be >= 1")
    if split == "iid":
        return [np.sort(p) for p in np.array_split(rng.permutation(len(y)), num_partitions)]
    if split != "dirichlet":
        raise ValueError(f"split must be iid or dirichlet, got {split!r}")
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(num_partitions)]
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(rng.dirichlet([alpha] * num_partitions))[:-1] * len(idx)).astype(int)
            for i, chunk in enumerate(np.split(idx, cuts)):
                parts[i] += chunk.tolist()
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"no Dirichlet({alpha}) split gives every one of {num_partitions} clients {min_size} examples")


def client_data(run_config: Any, partition_id: int, num_partitions: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _ = load(run_config, "train")
    parts = partition(y, num_partitions, cfg_str(run_config, "split", "iid"), alpha=float(run_config.get("alpha", 0.5)),
                      seed=int(run_config.get("seed", 0)))
    idx = torch.from_numpy(parts[partition_id])
    return x[idx], y[idx]


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    info = dataset_info(name)
    return info.mean, info.std


def plain_model(run_config: Any) -> nn.Module:
    """The architecture with torch's default init drawn from an explicit generator (biases are reproducible)."""
    gen = torch.Generator().manual_seed(int(run_config.get("seed", 0)) + 17)
    return create_model(cfg_str(run_config, "arch", "lenet5-caffe"), generator=gen)


def global_model(run_config: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The server's round-0 model in its family's training form, and its ``arch`` record.

    FreezeNet's saliency mask needs one batch: the server uses a seeded sample of ``saliency-size``
    training images (a small public batch), normalised as in training.
    """
    method = cfg_str(run_config, "method", "freezenet")
    seed = int(run_config.get("seed", 0))
    model = plain_model(run_config)
    if method == "freezenet":
        x, y, name = load(run_config, "train")
        g = torch.Generator().manual_seed(seed + 101)
        idx = torch.randperm(len(y), generator=g)[: int(run_config.get("saliency-size", 100))]
        mean, std = normalisation(name)
        batch = next(iter(Batches(x[idx], y[idx], batch_size=len(idx), mean=mean, std=std, shuffle=False, seed=0)))
        fzpack.freeze_(model, fzpack.FreezeNetConfig(rate=float(run_config.get("q", 0.99)), seed=seed), batch=batch)
    elif method == "dctps":
        fzpack.freeze_(model, fzpack.DCTpSConfig(density=float(run_config.get("density", 0.01)), seed=seed))
    elif method == "dense":
        fzpack.freeze_(model, fzpack.DenseConfig(seed=seed))
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return model, {"name": cfg_str(run_config, "arch", "lenet5-caffe"), "config": {}}


DENSE_LR = 0.01  # SGD at the FreezeNet paper's 0.1 diverges (NaN loss) for dense LeNet-5-Caffe from this init


def optimizer(model: nn.Module, method: str, lr: float) -> torch.optim.Optimizer:
    """The family's paper optimiser (FreezeNet / dense: SGD 0.9, wd 5e-4; DCTpS: Adam, wd 5e-4); ``lr`` 0 = its lr.

    FreezeNet trains at its paper's lr 0.1 and DCTpS with Adam at 1e-3; dense at 0.01 (see ``DENSE_LR``).
    """
    d = get_family(method).train_defaults(get_family(method).config_cls())
    lr = lr or (DENSE_LR if method == "dense" else 0.0)
    if d.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr or d.lr, weight_decay=d.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=lr or d.lr, momentum=d.momentum, weight_decay=d.weight_decay)


def train_local(model: nn.Module, x: torch.Tensor, y: torch.Tensor, run_config: Any, method: str, data_name: str,
                server_round: int, partition_id: int) -> dict[str, float]:
    """Local SGD/Adam for ``local-epochs`` epochs (at most ``local-steps`` steps when > 0); a fresh optimiser each round."""
    mean, std = normalisation(data_name)
    batches = Batches(x, y, batch_size=int(run_config.get("batch-size", 50)), mean=mean, std=std, shuffle=True,
                      seed=int(run_config.get("seed", 0)) * 1000 + partition_id)
    opt = optimizer(model, method, float(run_config.get("lr", 0.0)))
    state = frozen_state(model)
    family = get_family(state.method) if state is not None else None
    max_steps = int(run_config.get("local-steps", 0))
    model.train()
    steps, loss_sum, seen = 0, 0.0, 0
    for epoch in range(int(run_config.get("local-epochs", 1))):
        batches.set_epoch(server_round * 1000 + epoch)
        for xb, yb in batches:
            if max_steps and steps >= max_steps:
                break
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            if family is not None:
                group = opt.param_groups[0]
                family.after_step(model, state, lr=group["lr"], weight_decay=group["weight_decay"],
                                  momentum=group.get("momentum", 0.0))
            steps += 1
            loss_sum += float(loss.detach()) * len(yb)
            seen += len(yb)
    return {"train-loss": loss_sum / max(seen, 1), "local-steps": steps}


def test_accuracy(model: nn.Module, run_config: Any) -> EvalResult:
    x, y, name = load(run_config, "test")
    mean, std = normalisation(name)
    return evaluate(model, x, y, mean=mean, std=std)

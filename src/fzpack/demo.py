"""The README's main job: build a FreezeNet, pack it, restore it, prove it is the same network.

Until the full trainer lands this is a short, real run: LeNet-5-Caffe initialised from the seed
(Xavier-normal), FreezeNet mask from one Fashion-MNIST batch (Algorithm 1, q = 0.99), a few
hundred SGD steps on the trained entries only, then compress -> restore -> verify -> evaluate.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import zstandard
from safetensors.torch import save as st_save
from torch import nn
from tqdm import tqdm

from fzpack.checkpoint import make_checkpoint, save_checkpoint
from fzpack.compress import compress
from fzpack.data.idx import DatasetNotFoundError, load_idx_dataset, normalize
from fzpack.data.synthetic import make_synthetic
from fzpack.equality import tree_differences
from fzpack.freezenet import freeze_
from fzpack.models.registry import create_model
from fzpack.restore import restore


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _data(data_dir: str | None) -> tuple[str, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    try:
        train = load_idx_dataset("fashion-mnist", data_dir, "train")
        test = load_idx_dataset("fashion-mnist", data_dir, "test")
        name = "fashion-mnist"
    except DatasetNotFoundError:
        train, test = make_synthetic(6000, seed=1, split="train"), make_synthetic(1000, seed=1, split="test")
        name = "synthetic (Fashion-MNIST not found: apt-get install dataset-fashion-mnist)"
    norm = "fashion-mnist" if name == "fashion-mnist" else None
    return name, (normalize(train[0], dataset=norm), train[1]), (normalize(test[0], dataset=norm), test[1])


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def run_demo(workdir: str | Path, *, steps: int = 600, rate: float = 0.99, seed: int = 2026, data_dir: str | None = None,
             progress: bool = True) -> DemoReport:
    """Train a small FreezeNet, then compress, restore, verify and compare sizes.

    Args:
        workdir: where model.pt, model.fzp and the baselines are written.
        steps: SGD steps (batch 100, lr 0.1, momentum 0.9) on the trained entries only.
        rate: freezing rate q.
        seed: the checkpoint's seed (init, mask tie-breaks, data order).
        data_dir: Fashion-MNIST directory (default: the Debian package's).

    Returns:
        A :class:`DemoReport` with the size table and the accuracies before and after packing.
    """
    t0 = time.perf_counter()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    name, (xtr, ytr), (xte, yte) = _data(data_dir)
    model = create_model("lenet5-caffe")
    order = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(seed))
    frozen = freeze_(model, (xtr[order[:100]], ytr[order[:100]]), rate=rate, seed=seed)
    masks = {n: f.mask for n, f in frozen.items()}
    train_masked(model, masks, xtr, ytr, order, steps, progress)
    ckpt = make_checkpoint(model, frozen, seed=seed, method="freezenet", arch={"name": "lenet5-caffe", "config": {}},
                           metadata={"dataset": name, "steps": steps})
    pt, fzp = work / "model.pt", work / "model.fzp"
    save_checkpoint(ckpt, pt)
    rep = compress(pt, fzp)
    back = restore(fzp)
    diffs = tree_differences(ckpt, back)
    restored = create_model("lenet5-caffe")
    restored.load_state_dict(back["state_dict"])
    k = sum(int(m.sum()) for m in masks.values())
    report = DemoReport(dataset=name, steps=steps, q=rate, trained_weights=k, bit_identical=not diffs,
                        accuracy_before=accuracy(model, xte, yte), accuracy_restored=accuracy(restored, xte, yte),
                        files={"checkpoint": str(pt), "fzp": str(fzp)})
    report.rows = size_rows(ckpt, rep.output_bytes, rep.dense_fp32_bytes, masks)
    report.seconds = time.perf_counter() - t0
    return report


def train_masked(model: nn.Module, masks: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, order: torch.Tensor,
                  steps: int, progress: bool = False) -> None:
    """SGD (lr 0.1, momentum 0.9, batch 100) on the trained entries only: frozen gradients are zeroed."""
    params = dict(model.named_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    bar = tqdm(range(steps), desc="training (trained entries only)", disable=not progress, leave=False)
    for s in bar:
        idx = order[(s * 100) % len(order) :][:100]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for n, m in masks.items():
            params[n].grad.mul_(m)  # frozen entries get no update: they stay at their regeneration
        opt.step()
        if s % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")


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

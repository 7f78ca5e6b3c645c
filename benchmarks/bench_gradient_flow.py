"""Gradient flow at initialisation, FreezeNet vs SNIP (FreezeNet paper section 4.3, Fig. 4 left).

    python benchmarks/bench_gradient_flow.py            # writes the docs/results.md section and a PNG
    python benchmarks/bench_gradient_flow.py --quick    # one seed, 6,000 images, prints only

For each freezing rate q, the L1 norm of the loss gradient with respect to the trainable weights,
accumulated over the training set (mean loss per batch of 100, summed over batches) and divided
by the number of trainable weights - the quantity of the paper's Fig. 4 (left) - for a FreezeNet
(frozen weights keep their Xavier-normal values) and for SNIP (the same mask, the rest set to zero),
next to the dense baseline. LeNet-5-Caffe on Fashion-MNIST (the paper measures VGG16-D on
CIFAR-10, which is not available here). Same init and same mask for both methods at each seed.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from common import ROOT, md_table, write_section
from fzpack.checkpoint import FrozenTensor
from fzpack.data.idx import load_idx_dataset, normalize
from fzpack.families.freezenet import select_frozen as freeze_
from fzpack.generator import InitSpec
from fzpack.layers import convert_
from fzpack.models.registry import create_model


def grad_l1_per_weight(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 100) -> float:
    """Sum over batches of |dL/dw|_1 for the trainable weights (not biases), / number of them."""
    weights = [p for n, p in model.named_parameters() if n.endswith("trained") or n.endswith("weight")]
    total = torch.zeros((), dtype=torch.float64)
    model.eval()  # no dropout/BN here; eval keeps the pass deterministic
    for i in range(0, len(x), batch):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i : i + batch]), y[i : i + batch]), weights)
        total += sum(g.abs().sum(dtype=torch.float64) for g in grads)
    return float(total) / sum(p.numel() for p in weights)


def measure(q: float, seed: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    out = {}
    for method in ("freezenet", "snip"):
        model = create_model("lenet5-caffe")
        frozen = freeze_(model, (x[:100], y[:100]), rate=q, seed=seed)
        if method == "snip":
            frozen = {n: FrozenTensor(InitSpec("zeros"), f.mask, "zeros") for n, f in frozen.items()}
        convert_(model, frozen, seed=seed)
        out[method] = grad_l1_per_weight(model, x, y)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    x, y = load_idx_dataset("fashion-mnist", split="train")
    x = normalize(x, dataset="fashion-mnist")
    n = 6000 if args.quick else 54000  # the 9/1 training part
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]
    x, y = x[order], y[order]
    seeds = [1] if args.quick else [1, 2, 3]
    rates = [0.9, 0.99, 0.999]
    dense = [grad_l1_per_weight(_dense(s), x, y) for s in seeds]
    rows, raw = [], {}
    for q in rates:
        r = [measure(q, s, x, y) for s in seeds]
        fz = [m["freezenet"] for m in r]
        sn = [m["snip"] for m in r]
        raw[q] = r
        rows.append([q, _ms(fz), _ms(sn), sum(fz) / sum(sn) if sum(sn) else float("inf"), _ms(dense)])
    table = md_table(["q", "FreezeNet |g|_1 / trainable weight", "SNIP", "FreezeNet / SNIP", "dense baseline"], rows)
    print(table)
    if args.json:
        print(json.dumps({str(q): v for q, v in raw.items()}, indent=2))
    if not args.quick:
        png = ROOT / "docs" / "gradient_flow.png"
        _plot(rates, raw, sum(dense) / len(dense), png)
        write_section("gradient-flow", "## Gradient flow at initialisation, FreezeNet vs SNIP (issue 3, paper section 4.3)\n\n"
                      f"LeNet-5-Caffe, Fashion-MNIST ({n:,} training images, batches of 100), seeds {seeds}, mean ± std. "
                      "L1 norm of the gradient w.r.t. the trainable weights summed over batches, divided by their number; "
                      "same init and mask for both methods.\n\n" + table + "\n\n![gradient flow](gradient_flow.png)")


def _dense(seed: int) -> torch.nn.Module:
    model = create_model("lenet5-caffe")
    from fzpack.checkpoint import init_from_seed_

    init_from_seed_(model, seed)
    return model


def _ms(v: list[float]) -> str:
    mean = sum(v) / len(v)
    std = (sum((a - mean) ** 2 for a in v) / max(len(v) - 1, 1)) ** 0.5
    return f"{mean:.4g} ± {std:.2g}" if len(v) > 1 else f"{mean:.4g}"


def _plot(rates, raw, dense, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, style in (("freezenet", "o-"), ("snip", "s--")):
        ax.plot(rates, [sum(m[method] for m in raw[q]) / len(raw[q]) for q in rates], style, label=method)
    ax.axhline(dense, color="gray", lw=1, label="dense")
    ax.set_xscale("logit")
    ax.set_yscale("log")
    ax.set_xlabel("freezing rate q")
    ax.set_ylabel("|grad|_1 per trainable weight")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

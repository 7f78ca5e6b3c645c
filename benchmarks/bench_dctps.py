"""DCTpS vs Sparse (EPL) vs FreezeNet at the same number of trained weights, on Fashion-MNIST (issue 8).

    python benchmarks/bench_dctps.py run --arch lenet5-caffe          # train the grid (resumable)
    python benchmarks/bench_dctps.py run --arch resnet20 --threads 1 &  # x2: two runners share a grid
    python benchmarks/bench_dctps.py report                           # table + plot -> docs/results.md

The DCTpS paper's claim to test (dctps.md section 5, Fig. 2): DCTpS stays trainable at 0.01 % -
0.1 % trainable density where random sparse networks with the same per-layer budget (Sparse
(EPL)) collapse. Grid per architecture: densities 1 %, 0.1 %, 0.01 % of the Linear/Conv weights;
seeds 1 at 1 %, seeds 1 and 2 at 0.1 % and 0.01 %; a dense baseline (seed 1). FreezeNet trains
``floor(density * |W|)`` weights (q = 1 - density) chosen by SNIP saliency, plus one per layer it
would leave empty.

Each method trains with its own paper's optimiser (the family defaults of `fzpack train`):
DCTpS and Sparse (EPL): Adam, lr 1e-3, weight decay 5e-4, no decay of the lr (DCTpS Table 4);
FreezeNet and dense: SGD momentum 0.9, lr 0.1 (LeNet-5-Caffe dense: 0.01, 0.1 diverges), divided
by 10 at 50 % and 75 % of the budget, weight decay 5e-4 (FreezeNet S1.1). Batch 128 for DCTpS and
Sparse (DCTpS Table 4), 100 for the others; 9/1 train/validation split, the best validation epoch
kept. The epoch budget is what 2 CPU cores allow (stated in the report). Every run's `.fzp` is
written and its real size recorded.
"""

from __future__ import annotations

import argparse
import time

from common import ROOT, md_table, write_section
from grid import accuracy_panel, fmt_mean_std, grid_main, load_results, mean_std, plateau, run_grid

RESULTS = ROOT / "benchmarks" / "results" / "dctps"
WORK = ROOT / "runs" / "dctps"  # model.pt and resume files: large, not committed
DENSITIES = (0.01, 0.001, 0.0001)
METHODS = ("dctps", "sparse-epl", "freezenet")
BUDGET = {"lenet5-caffe": 8, "resnet20": 4}


def grid(arch: str) -> list[dict]:
    runs = [{"method": "dense", "density": 1.0, "seed": 1}]
    for d in DENSITIES:
        for s in ((1,) if d == 0.01 else (1, 2)):
            runs += [{"method": m, "density": d, "seed": s} for m in METHODS]
    for r in runs:
        r["arch"] = arch
        r["name"] = f"{r['method']}-d{r['density']}-s{r['seed']}"
    # seed 1 of every cell first, the lowest densities (the claim) first among them
    return sorted(runs, key=lambda r: (r["seed"], r["method"] != "dense", r["density"]))


def config(r: dict):
    from fzpack.train.config import TrainConfig

    e = BUDGET[r["arch"]]
    kw: dict = {}
    if r["method"] in ("freezenet", "dense"):
        kw["lr_drop_epochs"] = (e // 2, (3 * e) // 4)
        if r["method"] == "dense" and r["arch"] == "lenet5-caffe":
            kw["lr"] = 0.01  # lr 0.1 diverges on the dense LeNet-5-Caffe (see the FreezeNet reproduction)
    if r["method"] == "freezenet":
        kw["freeze_rate"] = 1.0 - r["density"]
    elif r["method"] != "dense":
        kw["density"] = r["density"]
    return TrainConfig(method=r["method"], arch=r["arch"], dataset="fashion-mnist", seed=r["seed"], epochs=e, val_split=0.1,
                       device="cpu", progress=False, **kw)


def finish_run(r: dict) -> dict:
    import fzpack
    from fzpack.train.loop import train

    out = WORK / r["arch"] / r["name"] / "model.pt"
    t = time.perf_counter()
    res = train(config(r), out, resume=True)
    report = fzpack.compress(out, out.with_suffix(".fzp"))
    fp16 = fzpack.compress(out, out.with_name("model-fp16.fzp"), values="fp16")
    return {**r, "metrics": res.metrics, "fzp_bytes": report.output_bytes, "fzp_fp16_bytes": fp16.output_bytes,
            "breakdown": report.breakdown, "dense_fp32_bytes": report.dense_fp32_bytes, "wall_s": time.perf_counter() - t}


def cmd_run(args: argparse.Namespace) -> None:
    todo = [r for r in grid(args.arch) if not (RESULTS / args.arch / f"{r['name']}.json").exists()]
    print(f"{args.arch}: {len(todo)} runs left" + ("" if not args.dry_run else ": " + ", ".join(r["name"] for r in todo)))
    if args.dry_run:
        return

    def describe(res: dict) -> str:
        m = res["metrics"]
        return f"test {m['test_accuracy']:.4f} (best epoch {m['best_epoch']}), .fzp {res['fzp_bytes']:,} B, {res['wall_s']:.0f} s"

    run_grid(todo, RESULTS, WORK, finish_run, limit=args.limit, threads=args.threads, describe=describe)


def cmd_report(args: argparse.Namespace) -> None:
    body = []
    for arch, epochs in BUDGET.items():
        runs = load_results(RESULTS, arch)
        if not runs:
            continue
        pick = lambda m, d, key: [key(r) for r in runs if r["method"] == m and r["density"] == d]  # noqa: E731
        acc = lambda r: r["metrics"]["test_accuracy"]  # noqa: E731
        base = pick("dense", 1.0, acc)
        rows = []
        for d in DENSITIES:
            k = next((r["metrics"]["trained_weights"] for r in runs if r["density"] == d and r["method"] == "dctps"), None)
            row: list = [f"{100 * d:g} %", k if k is not None else "-"]
            for m in METHODS:
                row.append(fmt_mean_std(pick(m, d, acc)))
            for m in METHODS:
                sizes = pick(m, d, lambda r: r["fzp_bytes"])
                row.append(f"{round(mean_std(sizes)[0]):,}" if sizes else "-")
            rows.append(row)
        dense_b = next((r["dense_fp32_bytes"] for r in runs), 0)
        collapse = [r["name"] for r in runs if r["metrics"]["test_accuracy"] < 0.2]
        best = "; ".join(f"{r['name']}: {r['metrics']['best_epoch']}/{r['metrics']['epochs_run']}" for r in runs)
        body += [f"### {arch} on Fashion-MNIST ({epochs} epochs)\n",
                 f"Dense baseline: test accuracy {fmt_mean_std(base)}, dense fp32 {dense_b:,} B. "
                 f"Runs at or below chance (< 0.2): {collapse or 'none'}.\n",
                 md_table(["density", "trained weights", "DCTpS acc", "Sparse (EPL) acc", "FreezeNet acc",
                           "DCTpS .fzp B", "Sparse (EPL) .fzp B", "FreezeNet .fzp B"], rows),
                 f"\nBest epoch / epochs run: {best}\n", plateau(runs)]
    if not body:
        print("no results yet")
        return
    _plot(ROOT / "docs" / "dctps_vs_sparse.png")
    text = ("## DCTpS vs Sparse (EPL) vs FreezeNet at equal trained weights (issue 8)\n\n"
            "Same number of trained Linear/Conv weights per cell (FreezeNet adds one per layer it would leave "
            "empty); each method with its paper's optimiser (DCTpS, Sparse: Adam 1e-3, batch 128; FreezeNet, dense: "
            "SGD 0.1 with two drops, batch 100); mean ± std over seeds. `.fzp` bytes are the real lossless files "
            "(DCTpS and Sparse store no mask: their supports come from the seed; FreezeNet stores its SNIP mask). "
            "Not run here: the paper's CIFAR-10/100 and Tiny ImageNet settings (200 epochs on a GPU; CIFAR cannot be "
            "downloaded here), VGG19/ResNet50/MobileNetV2, and the SGD variants of its appendix A.3.\n\n"
            + "\n".join(body) + "\n![accuracy vs density](dctps_vs_sparse.png)\n\n"
            "Runs: `python benchmarks/bench_dctps.py run --arch lenet5-caffe` and `... --arch resnet20` (resumable; "
            "two 1-thread runners here, `--threads 1`), per-run JSON in benchmarks/results/dctps/; then this report.")
    print(text)
    if not args.no_write:
        write_section("dctps-vs-sparse", text)


def _plot(path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = [a for a in BUDGET if load_results(RESULTS, a)]
    fig, axes = plt.subplots(1, len(archs), figsize=(5 * len(archs), 3.8), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        runs = load_results(RESULTS, arch)
        accuracy_panel(ax, runs, "density", DENSITIES, (("dctps", "o-"), ("sparse-epl", "s--"), ("freezenet", "^:")),
                       x=lambda d: 100 * d)
        ax.axhline(0.1, color="gray", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_title(f"{arch}, Fashion-MNIST ({BUDGET[arch]} epochs)")
        ax.set_xlabel("trained weights (% of Linear/Conv weights)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    grid_main(__doc__, list(BUDGET), cmd_run, cmd_report)


if __name__ == "__main__":
    main()

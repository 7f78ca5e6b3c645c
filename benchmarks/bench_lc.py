"""LCResNet checkpoint sizes (the paper's Table 3 analogue) and accuracy on Fashion-MNIST (issue 8).

    python benchmarks/bench_lc.py sizes                     # sizes of LCResNet-20-16x{1,8,128}, no training
    python benchmarks/bench_lc.py run --threads 1           # train the accuracy grid (resumable)
    python benchmarks/bench_lc.py report                    # both tables -> docs/results.md

Sizes (paper Table 3: LCResNet-20-16x128, 146.66 MB dense -> 33.84 MB with weight sharing ->
17.74 MB with recycled sharing 1/16, unchanged by 1x1 pruning). The paper measures a PyTorch state
dict on disk that holds the learnable weights plus the shared bank; fzpack's `.fzp` holds the
learnable weights and regenerates every frozen weight and the bank from the seed. Both are
measured here on the same models: weights at their seeded initialisation (a size needs no
training; trained values are as incompressible), 1x1 pruning by global magnitude at rho = 0.7.

Accuracy: LCResNet-20-16x1 and 16x4 on Fashion-MNIST with the LC paper's optimiser (SGD Nesterov
0.9, lr 1e-2 cosine, weight decay 1e-2, batch 256, label smoothing 0.1, its appendix C) for the
epochs in BUDGET (the paper trains 75 epochs on CIFAR-10 on a GPU), frozen vs learnable spatial
convs, and frozen with recycled sharing.
"""

from __future__ import annotations

import argparse
import io
import json
import time

import torch

from common import ROOT, md_table, write_section
from grid import load_results, run_grid

RESULTS = ROOT / "benchmarks" / "results" / "lc"
WORK = ROOT / "runs" / "lc"
EXPANSIONS = (1, 8, 128)
PAPER = {"dense": 146.66, "global": 33.84, "recycled": 17.74, "pruned": 17.74}  # MB (MiB), Table 3, E = 128
BUDGET = {"lcresnet-20-16x1": 3, "lcresnet-20-16x4": 3}
RUNS = [("lcresnet-20-16x1", "lc-frozen", "none"), ("lcresnet-20-16x1", "lc-learnable", "none"),
        ("lcresnet-20-16x1", "lc-frozen", "recycled"), ("lcresnet-20-16x4", "lc-frozen", "none"),
        ("lcresnet-20-16x4", "lc-learnable", "none"), ("lcresnet-20-16x4", "lc-frozen", "recycled")]


def _saved_bytes(obj: object) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(buf.getvalue())


def _paper_checkpoint(model: torch.nn.Module, spatial: list[str], bank: torch.Tensor | None) -> dict:
    """What the paper saves: the state dict; with sharing, the shared bank instead of the spatial weights."""
    from fzpack.layers import dense_state_dict

    sd = dense_state_dict(model)
    if bank is not None:
        sd = {k: v for k, v in sd.items() if k not in spatial}
        sd["shared_bank"] = bank
    return sd


def sizes_for(expansion: int) -> dict:
    import fzpack
    from fzpack.families import get_family
    from fzpack.families.lc import BANK_NAME, spatial_weights
    from fzpack.freeze import checkpoint_of, frozen_state
    from fzpack.generator import InitSpec, generate
    from fzpack.models.registry import count_parameters, create_model
    from fzpack.pack import pack

    arch = f"lcresnet-20-16x{expansion}"
    plain = create_model(arch)
    dense = _saved_bytes(plain.state_dict())
    params = count_parameters(plain)
    del plain
    row: dict = {"arch": arch, "parameters": params, "dense_torch_save": dense}
    for share in ("none", "global", "recycled", "pruned"):
        model = create_model(arch)
        cfg = fzpack.LCConfig(seed=1, share="recycled" if share == "pruned" else share, bank_fraction=16,
                              prune_1x1=0.7 if share == "pruned" else 0.0)
        fzpack.freeze_(model, cfg)
        state = frozen_state(model)
        if share == "pruned":
            get_family("lc-frozen").finalize_(model, state)
        spatial = spatial_weights(model)
        bank = None
        if state.banks:
            bank = generate(InitSpec("bank", 1.0, bank=BANK_NAME), 1, "bank", (state.banks[BANK_NAME],), banks=state.banks)
        ckpt = checkpoint_of(model, arch={"name": arch, "config": {}})
        lossless = pack(ckpt).data
        fp16 = pack(ckpt, "fp16").data
        row[share] = {"paper_style_torch_save": _saved_bytes(_paper_checkpoint(model, spatial, bank)),
                      "fzp": len(lossless), "fzp_fp16": len(fp16), "bank_length": state.banks.get(BANK_NAME, 0),
                      "learnable": sum(p.numel() for p in model.parameters()),
                      "pruned_1x1": state.info.get("pruned_1x1", 0)}
        assert fzpack.restore(lossless)["state_dict"].keys() == ckpt["state_dict"].keys()
        del model, ckpt
    return row


def cmd_sizes(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for e in args.expansions:
        t = time.perf_counter()
        row = sizes_for(e)
        row["seconds"] = time.perf_counter() - t
        (RESULTS / f"sizes-16x{e}.json").write_text(json.dumps(row, indent=1) + "\n")
        print(json.dumps(row), flush=True)


def _run_record(arch: str, method: str, share: str) -> dict:
    return {"arch": arch, "method": method, "share": share, "name": f"{method}-{share}"}


def finish_run(r: dict) -> dict:
    import fzpack
    from fzpack.train.config import TrainConfig
    from fzpack.train.loop import train

    cfg = TrainConfig(method=r["method"], arch=r["arch"], dataset="fashion-mnist", seed=1, epochs=BUDGET[r["arch"]],
                      share=r["share"], bank_fraction=16, val_split=0.1, device="cpu", progress=False)
    out = WORK / r["arch"] / r["name"] / "model.pt"
    t = time.perf_counter()
    res = train(cfg, out, resume=True)
    rep = fzpack.compress(out, out.with_suffix(".fzp"))
    return {**r, "metrics": res.metrics, "fzp_bytes": rep.output_bytes, "dense_fp32_bytes": rep.dense_fp32_bytes,
            "wall_s": time.perf_counter() - t}


def cmd_run(args: argparse.Namespace) -> None:
    todo = [_run_record(*x) for x in RUNS]
    todo = [r for r in todo if not (RESULTS / r["arch"] / f"{r['name']}.json").exists()]
    print(f"{len(todo)} runs left")
    run_grid(todo, RESULTS, WORK, finish_run, limit=args.limit, threads=args.threads,
             describe=lambda res: f"test {res['metrics']['test_accuracy']:.4f}, .fzp {res['fzp_bytes']:,} B, {res['wall_s']:.0f} s")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f}"


def cmd_report(args: argparse.Namespace) -> None:
    parts = ["## LCResNet: checkpoint sizes (paper Table 3) and accuracy on Fashion-MNIST (issue 8)\n"]
    rows = []
    for e in EXPANSIONS:
        path = RESULTS / f"sizes-16x{e}.json"
        if not path.exists():
            continue
        s = json.loads(path.read_text())
        rows.append([s["arch"], f"{s['parameters']:,}", _mib(s["dense_torch_save"]),
                     _mib(s["global"]["paper_style_torch_save"]), _mib(s["recycled"]["paper_style_torch_save"]),
                     _mib(s["pruned"]["paper_style_torch_save"]), _mib(s["none"]["fzp"]), _mib(s["global"]["fzp"]),
                     _mib(s["recycled"]["fzp"]), _mib(s["pruned"]["fzp"]), _mib(s["pruned"]["fzp_fp16"]),
                     f"{s['dense_torch_save'] / s['pruned']['fzp']:,.1f}x"])
        if e == 128:
            rows.append(["paper, 16x128", "38.4 M", f"{PAPER['dense']}", f"{PAPER['global']}", f"{PAPER['recycled']}",
                         f"{PAPER['pruned']}", "-", "-", "-", "-", "-", f"{PAPER['dense'] / PAPER['pruned']:.1f}x"])
    if rows:
        parts += ["Sizes in MiB (the paper's 'MB' are MiB: 38.4 M float32 parameters are 146.6 MiB). 'torch.save' columns "
                  "follow the paper's accounting (learnable weights + the shared bank, pruned weights kept as zeros); "
                  "`.fzp` columns are real files of the same models, lossless unless marked fp16 (trained values of the "
                  "pruned 1x1 convs rounded to float16; BatchNorm and the rest exact). A `.fzp` stores no frozen weight and "
                  "no bank in any column: sharing changes the memory a model needs at run time, not its file. The last "
                  "column is dense torch.save / the lossless pruned `.fzp`.\n",
                  md_table(["model", "params", "dense torch.save", "+ global sharing", "+ recycled 1/16", "+ 1x1 pruning 0.7",
                            ".fzp frozen", ".fzp global", ".fzp recycled", ".fzp pruned", ".fzp pruned fp16", "factor"], rows)]
        s = json.loads((RESULTS / f"sizes-16x{EXPANSIONS[-1]}.json").read_text()) if (RESULTS / "sizes-16x128.json").exists() else None
        if s:
            parts.append(f"\nLCResNet-20-16x128: bank {s['global']['bank_length']:,} values (global), "
                         f"{s['recycled']['bank_length']:,} (recycled 1/16, whole 3x3 kernels); learnable parameters "
                         f"{s['global']['learnable']:,}; pruning removes {s['pruned']['pruned_1x1']:,} 1x1 weights.\n")
    acc_rows = []
    for arch in BUDGET:
        for r in load_results(RESULTS, arch):
            m = r["metrics"]
            acc_rows.append([arch, r["method"], r["share"], BUDGET[arch], f"{m['test_accuracy']:.4f}", f"{m['best_epoch']}",
                             f"{m['trained_parameters']:,}", f"{r['fzp_bytes']:,}", f"{r['dense_fp32_bytes'] / r['fzp_bytes']:.1f}x",
                             f"{r['wall_s'] / 60:.0f} min"])
    if acc_rows:
        parts += ["\n### Accuracy on Fashion-MNIST\n",
                  "LC paper optimiser (appendix C: SGD Nesterov 0.9, lr 1e-2 cosine, wd 1e-2, batch 256, label smoothing "
                  "0.1), one seed, 9/1 split, best validation epoch kept; the paper trains 75 epochs on CIFAR-10.\n",
                  md_table(["model", "method", "sharing", "epochs", "test acc", "best epoch", "trained params", ".fzp B",
                            "factor vs dense fp32", "wall"], acc_rows)]
    parts.append("\nSizes: `python benchmarks/bench_lc.py sizes`; accuracy runs: `python benchmarks/bench_lc.py run --threads 1` "
                 "(resumable; per-run JSON in benchmarks/results/lc/); then this report.")
    text = "\n".join(parts)
    print(text)
    if not args.no_write:
        write_section("lcresnet", text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sizes")
    s.add_argument("--expansions", type=int, nargs="*", default=list(EXPANSIONS))
    r = sub.add_parser("run")
    r.add_argument("--limit", type=int, default=None)
    r.add_argument("--threads", type=int, default=None)
    rep = sub.add_parser("report")
    rep.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    {"sizes": cmd_sizes, "run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()

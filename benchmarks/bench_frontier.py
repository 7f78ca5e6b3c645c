"""Size-accuracy frontier on Fashion-MNIST (issue 4): every file really written, every accuracy measured.

    python benchmarks/bench_frontier.py                     # every panel -> docs/results.md + docs/frontier.png
    python benchmarks/bench_frontier.py --arch lenet-300-100 --no-write
    python benchmarks/bench_frontier.py --arch lenet5-caffe resnet20 lcresnet-20-16x1 lcresnet-20-16x4  # issue 8 panels

Models: the seed-1 runs of the FreezeNet reproduction (`reproduce_freezenet.py`, 40 / 16 epochs,
best validation epoch): dense, SNIP and FreezeNet at q in {0.9, 0.99, 0.995, 0.999}, plus
FreezeNet at a few more rates between 0.9 and 0.99 (EXTRA_RATES). A missing model is trained here
with the reproduction's exact settings (minutes per run).

Points (bytes = the produced file's length; accuracy = the test set evaluated on the network
rebuilt from *decoding that file*):
  * dense, lossless: safetensors, zstd-19, byte-grouped zstd, ZipNN (when installed), fzpack;
  * dense + NNCodec at a sweep of its quantisation parameter qp (lossy; when installed,
    `benchmarks/install_nncodec.sh`);
  * SNIP at each q: its smallest sparse file (COO / CSR / bitmask + values) and fzpack lossless;
  * FreezeNet at each q: fzpack lossless, fp16, bf16, q8 values;
  * the other families (issue 8), from the finished runs of `bench_dctps.py` and `bench_lc.py`
    (seed 1): DCTpS and Sparse (EPL) at each density on LeNet-5-Caffe and ResNet-20 (with
    ResNet-20's dense and FreezeNet runs), LCResNet-20-16x{1,4} frozen / learnable / recycled,
    each as fzpack lossless, fp16, bf16, q8.

The issue's goal is tested literally: for every NNCodec point above 20x, is there an fzpack file
with no more bytes and no lower test accuracy?
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from common import ROOT, md_table, write_section
from reproduce_freezenet import RATES, model_file

from fzpack.baselines import Artifact, StateDict
from fzpack.baselines.dense import dense_artifacts
from fzpack.baselines.fzp import fzp_artifacts
from fzpack.baselines.sparse import sparse_artifacts
from fzpack.baselines.zipnn_row import zipnn_artifacts, zipnn_available
from fzpack.compare import difference, load_subject
from fzpack.data.datasets import dataset_info
from fzpack.models import create_model
from fzpack.train.data import load_eval_split
from fzpack.train.metrics import evaluate

ARCHS = ("lenet-300-100", "lenet5-caffe", "resnet20", "lcresnet-20-16x1", "lcresnet-20-16x4")
REPRO_ARCHS = ("lenet-300-100", "lenet5-caffe")  # the FreezeNet reproduction's models
FAMILY_LABEL = {"dctps": "DCTpS", "sparse-epl": "Sparse (EPL)", "freezenet": "FreezeNet", "dense": "dense",
                "lc-frozen": "LC frozen", "lc-learnable": "LC learnable"}
NNCODEC_QPS = (-38, -34, -30, -26, -23, -20, -18, -16, -14, -12)
SPARSE_KEYS = ("sparse-coo", "sparse-csr", "bitmask-values")
# FreezeNet only, seed 1, same budget: fills the frontier between q = 0.9 and 0.99.
EXTRA_RATES = {"lenet-300-100": (0.95, 0.97, 0.98), "lenet5-caffe": (0.95, 0.98)}
GOAL_FACTOR = 20.0
JSON_OUT = ROOT / "benchmarks" / "results" / "frontier.json"
PLOT = ROOT / "docs" / "frontier.png"


@dataclass
class Point:
    arch: str
    family: str  # plot series
    label: str  # table row
    q: float | None
    bytes: int
    factor: float
    lossless: bool
    max_abs_error: float
    accuracy: float
    fzpack: bool


class Evaluator:
    """Test accuracy of a state dict loaded into a fresh registry model (the full 10k test set)."""

    def __init__(self, arch: str, config: dict | None = None) -> None:
        self.arch = arch
        self.config = dict(config or {})
        self.info = dataset_info("fashion-mnist")
        self.x, self.y = load_eval_split("fashion-mnist", split="test")

    def __call__(self, sd: StateDict) -> float:
        model = create_model(self.arch, **self.config)
        model.load_state_dict(sd)
        return evaluate(model, self.x, self.y, mean=self.info.mean, std=self.info.std).accuracy


def measure(arch: str, a: Artifact, ref: StateDict, evaluate_sd: Evaluator, family: str, q: float | None,
            dense_bytes: int, fz: bool) -> Point:
    back = a.decode(a.data) if a.decode is not None else None
    if back is None:
        raise ValueError(f"{a.key} cannot be decoded")
    back = {k: back[k] for k in ref}  # a decoder may return extra entries; the network needs these
    lossless, err = difference(ref, back)
    if err is None:
        raise ValueError(f"{a.key} decodes to other shapes or dtypes than the checkpoint")
    sd = {k: v.float() if v.is_floating_point() else v for k, v in back.items()}
    acc = evaluate_sd(sd)
    return Point(arch, family, a.label, q, len(a.data), dense_bytes / len(a.data), lossless, err, acc, fz)


def nncodec_points(arch: str, ref: StateDict, ev: Evaluator, dense_bytes: int, qps: tuple[int, ...]) -> tuple[list[Point], str | None]:
    try:
        from fzpack.baselines import nncodec_row
    except ImportError:
        return [], "NNCodec adapter missing"
    reason = nncodec_row.available()
    if reason is not None:
        return [], reason
    points = []
    for qp in qps:
        print(f"  {arch}: NNCodec qp={qp}", file=sys.stderr, flush=True)
        data = nncodec_row.encode(ref, qp)
        a = Artifact(f"nncodec{qp}", f"dense + NNCodec qp={qp}", f"nncodec{qp}.nnc", data, lambda b: nncodec_row.decode(b, ref))
        points.append(measure(arch, a, ref, ev, "dense + NNCodec (lossy)", None, dense_bytes, False))
    return points, None


def family_points(arch: str) -> tuple[list[Point], list[str]]:
    """Seed-1 runs of bench_dctps / bench_lc on ``arch``: every one as fzpack lossless, fp16, bf16, q8."""
    runs = []
    for bench in ("dctps", "lc"):
        for path in sorted((ROOT / "benchmarks" / "results" / bench / arch).glob("*.json")):
            r = json.loads(path.read_text())
            model = ROOT / "runs" / bench / arch / r["name"] / "model.pt"
            # the LeNets' dense and FreezeNet points come from the reproduction (arch_points), not from here
            if arch in REPRO_ARCHS and r["method"] not in ("dctps", "sparse-epl"):
                continue
            if r.get("seed", 1) == 1 and model.exists():
                runs.append((r, model))
    if not runs:
        return [], [f"{arch}: no finished bench_dctps / bench_lc runs here (run them first)."]
    pts: list[Point] = []
    ev = None
    for r, model in runs:
        subject, _ = load_subject(model)
        if ev is None:
            ev = Evaluator(arch, (subject.obj["fzpack"].get("arch") or {}).get("config"))
        dense_bytes = sum(v.numel() * 4 for v in subject.state_dict.values() if v.is_floating_point())
        what = FAMILY_LABEL.get(r["method"], r["method"])
        where = f"density {100 * r['density']:g} %" if "density" in r and r["method"] != "dense" else r.get("share", "")
        where = f" sharing {where}" if r.get("share") not in (None, "none") else (f" {where}" if "density" in r else "")
        print(f"{arch}: {r['name']}", file=sys.stderr, flush=True)
        for a in fzp_artifacts(subject):
            mode = a.key.split("-", 1)[1] if "-" in a.key else "lossless"
            a.label = f"{what}{where}: {a.label}"
            q = 1.0 - r["density"] if "density" in r and r["method"] != "dense" else None
            pts.append(measure(arch, a, subject.state_dict, ev, f"{what} .fzp {mode}", q, dense_bytes, True))
    return pts, []


def arch_points(arch: str, qps: tuple[int, ...]) -> tuple[list[Point], list[str]]:
    if arch not in REPRO_ARCHS:
        return family_points(arch)
    ev = Evaluator(arch)
    notes: list[str] = []
    dense, _ = load_subject(model_file(arch, "dense", 0.0))
    ref = dense.state_dict
    dense_bytes = sum(v.numel() * 4 for v in ref.values() if v.is_floating_point())
    pts: list[Point] = []
    print(f"{arch}: dense lossless files", file=sys.stderr, flush=True)
    lossless = [a for a in dense_artifacts(dense) + zipnn_artifacts(dense) if a.key != "torch-save"]
    for a in lossless + fzp_artifacts(dense):
        a.label = f"dense: {a.label}"
        pts.append(measure(arch, a, ref, ev, "dense, lossless", None, dense_bytes, a.key.startswith("fzpack")))
    if not zipnn_available():
        notes.append("ZipNN not installed: its point is missing (pip install 'fzpack[zipnn]').")
    nn, why = nncodec_points(arch, ref, ev, dense_bytes, qps)
    pts += nn
    if why:
        notes.append(f"NNCodec points missing: {why}.")
    for q in sorted(RATES + EXTRA_RATES[arch]):
        print(f"{arch}: q = {q}", file=sys.stderr, flush=True)
        if q in EXTRA_RATES[arch]:
            pts += freezenet_points(arch, q, ev, dense_bytes)
            continue
        snip, _ = load_subject(model_file(arch, "snip", q))
        sparse = [a for a in sparse_artifacts(snip) if a.key in SPARSE_KEYS]
        best = min(sparse, key=lambda a: len(a.data))
        best.label = f"SNIP q={q}: {best.label}"
        pts.append(measure(arch, best, snip.state_dict, ev, "SNIP, best sparse format", q, dense_bytes, False))
        a = fzp_artifacts(snip)[0]
        a.label = f"SNIP q={q}: {a.label}"
        pts.append(measure(arch, a, snip.state_dict, ev, "SNIP as .fzp", q, dense_bytes, True))
        pts += freezenet_points(arch, q, ev, dense_bytes)
    if arch == "lenet5-caffe":  # DCTpS / Sparse (EPL) of the same network (bench_dctps.py)
        more, more_notes = family_points(arch)
        pts += more
        notes += more_notes
    return pts, notes


def freezenet_points(arch: str, q: float, ev: Evaluator, dense_bytes: int) -> list[Point]:
    fz, _ = load_subject(model_file(arch, "freezenet", q))
    pts = []
    for a in fzp_artifacts(fz):
        mode = a.key.split("-", 1)[1] if "-" in a.key else "lossless"
        a.label = f"FreezeNet q={q}: {a.label}"
        pts.append(measure(arch, a, fz.state_dict, ev, f"FreezeNet .fzp {mode}", q, dense_bytes, True))
    return pts


def dominance(points: list[Point]) -> list[list[object]]:
    """For each NNCodec point above GOAL_FACTOR: the smallest fzpack file at least as accurate and no larger."""
    rows = []
    for p in points:
        if p.family.startswith("dense + NNCodec") and p.factor > GOAL_FACTOR:
            ok = [f for f in points if f.arch == p.arch and f.fzpack and f.bytes <= p.bytes and f.accuracy >= p.accuracy]
            if ok:
                best, verdict = min(ok, key=lambda f: f.bytes), "yes"
            else:  # the most accurate fzpack file that is no larger, and how far short it falls
                small = [f for f in points if f.arch == p.arch and f.fzpack and f.bytes <= p.bytes]
                best = max(small, key=lambda f: f.accuracy) if small else None
                verdict = f"NO ({100 * (best.accuracy - p.accuracy):+.2f} pt)" if best else "NO"
            rows.append([p.arch, p.label, p.bytes, p.factor, p.accuracy, best.label if best else "none",
                         best.bytes if best else "-", best.accuracy if best else "-", verdict])
    return rows


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = sorted({p.arch for p in points}, key=ARCHS.index)
    cols = min(3, len(archs))
    rows = -(-len(archs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.8 * rows), squeeze=False)
    for ax in axes.flat[len(archs):]:
        ax.set_visible(False)
    styles = {"dense, lossless": dict(color="k", marker="D", ls="none"),
              "dense + NNCodec (lossy)": dict(color="C3", marker="s", ls="-"),
              "SNIP, best sparse format": dict(color="C1", marker="v", ls="--"),
              "SNIP as .fzp": dict(color="C1", marker="^", ls="-"),
              "FreezeNet .fzp lossless": dict(color="C0", marker="o", ls="-"),
              "FreezeNet .fzp fp16": dict(color="C2", marker="o", ls="-"),
              "FreezeNet .fzp bf16": dict(color="C4", marker="o", ls=":"),
              "FreezeNet .fzp q8": dict(color="C9", marker="o", ls="-")}
    extra = sorted({p.family for p in points} - set(styles))
    markers = {"lossless": "o", "fp16": "s", "bf16": "v", "q8": "D"}
    for i, fam in enumerate(extra):  # the other families: a color per family, a marker per value codec
        styles[fam] = dict(color=f"C{(5 + i // 4) % 10}", marker=markers.get(fam.rsplit(" ", 1)[-1], "x"), ls="none")
    for ax, arch in zip(axes.flat, archs):
        mine = [p for p in points if p.arch == arch]
        for fam, st in styles.items():
            ps = sorted((p for p in mine if p.family == fam), key=lambda p: p.bytes)
            if ps:
                ax.plot([p.bytes for p in ps], [p.accuracy for p in ps], ms=5, label=fam, **st)
        dense_bytes = mine[0].bytes * mine[0].factor
        ax.axvline(dense_bytes / GOAL_FACTOR, color="gray", lw=0.8, ls=":", label=f"{GOAL_FACTOR:.0f}x")
        ax.set_xscale("log")
        # collapsed runs (at or near chance, 0.1) stay off the axis; every trained point stays on it
        lo = min((p.accuracy for p in mine if p.accuracy > 0.2), default=0.2)
        ax.set_ylim(max(0.2, lo - 0.03), max(p.accuracy for p in mine) + 0.01)
        ax.set_xlabel("file bytes (log)")
        ax.set_ylabel("test accuracy (Fashion-MNIST)")
        ax.set_title(arch)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(points: list[Point], notes: list[str], write: bool) -> str:
    body = ["## Size-accuracy frontier on Fashion-MNIST (issue 4)\n",
            "Each point is a file that was written and decoded again; accuracy is the full test set (10,000 images) evaluated "
            "on the network rebuilt from that file. Models: seed-1 runs of the FreezeNet reproduction (dense, SNIP, FreezeNet; "
            "same training budget), plus FreezeNet at " + "; ".join(f"q = {' / '.join(map(str, qs))} ({a})" for a, qs in EXTRA_RATES.items())
            + " (seed 1, same budget) to fill the frontier. "
            "NNCodec 2.1.3 with its defaults (qp_density 2, dependent quantization, biases at nonweight_qp -75; "
            "docs/nncodec.md); its bytes are the whole NNC bitstream. Sub-chance points (SNIP at q = 0.999: 0.100) are off "
            "the plot's y range. Issue 8 adds, from the seed-1 runs of `bench_dctps.py` and `bench_lc.py` (their budgets, "
            "their sections below): DCTpS and Sparse (EPL) on LeNet-5-Caffe, and panels for ResNet-20 (dense, FreezeNet, "
            "DCTpS, Sparse (EPL)) and LCResNet-20-16x1 / 16x4 (frozen, learnable, recycled sharing), each file lossless and "
            "with fp16 / bf16 / q8 trained values.\n"]
    for arch in ARCHS:
        mine = sorted((p for p in points if p.arch == arch), key=lambda p: p.bytes)
        if not mine:
            continue
        body.append(f"\n### {arch}\n")
        body.append(md_table(["file", "bytes", "factor", "lossless", "max abs err", "test acc"],
                             [[p.label, p.bytes, p.factor, "yes" if p.lossless else "no", f"{p.max_abs_error:.2e}", f"{p.accuracy:.4f}"]
                              for p in mine]))
    dom = dominance(points)
    body.append(f"\n### Does fzpack dominate NNCodec above {GOAL_FACTOR:.0f}x?\n")
    if dom:
        body.append(md_table(["arch", "NNCodec point", "bytes", "factor", "acc", "smallest fzpack file with <= bytes and >= acc "
                              "(if none: the most accurate one with <= bytes)",
                              "bytes", "acc", "dominated"], dom))
        n_yes = sum(r[-1] == "yes" for r in dom)
        body.append(f"\n{n_yes} of {len(dom)} NNCodec points above {GOAL_FACTOR:.0f}x are dominated by an fzpack file.")
    else:
        body.append("No NNCodec point above the threshold was produced (see the notes).")
    if notes:
        body.append("\nNotes: " + " ".join(dict.fromkeys(notes)))
    body.append("\n![size-accuracy frontier](frontier.png)")
    text = "\n".join(body)
    if write:
        plot(points, PLOT)
        write_section("frontier", text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=ARCHS, nargs="*", default=list(ARCHS))
    ap.add_argument("--qp", type=int, nargs="*", default=list(NNCODEC_QPS), help="NNCodec quantisation parameters")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/ and results/ alone")
    ap.add_argument("--json", action="store_true", help="print the points as JSON")
    ap.add_argument("--from-json", action="store_true", help=f"only rewrite the report from {JSON_OUT.relative_to(ROOT)}")
    ap.add_argument("--families-only", action="store_true",
                    help="measure only the issue-8 family points of --arch and merge them into the recorded points")
    args = ap.parse_args()
    points: list[Point] = []
    notes: list[str] = []
    if args.from_json:  # re-render the table and plot from the recorded points, no re-measuring
        points = [Point(**d) for d in json.loads(JSON_OUT.read_text())]
        notes.append(f"Re-rendered from {JSON_OUT.relative_to(ROOT)}; the points were measured by `python benchmarks/bench_frontier.py` "
                     "(dense, SNIP, FreezeNet and NNCodec on the LeNets; 2026-11-22, Intel Xeon, 2 cores) and "
                     "`python benchmarks/bench_frontier.py --families-only --arch lenet5-caffe resnet20 lcresnet-20-16x1` "
                     "(the issue-8 family points; 2026-12-04, AMD EPYC, 2 cores).")
        print(report(points, notes, True))
        return
    for arch in args.arch:
        p, n = family_points(arch) if args.families_only else arch_points(arch, tuple(args.qp))
        points += p
        notes += n
    if not args.no_write:
        old = json.loads(JSON_OUT.read_text()) if JSON_OUT.exists() else []
        if args.families_only:  # keep every other point of these panels (e.g. NNCodec's, measured before)
            mine = {(p.arch, p.family) for p in points}  # per panel: LeNet's FreezeNet points are not ResNet-20's
            keep = [d for d in old if (d["arch"], d["family"]) not in mine]
        else:
            keep = [d for d in old if d["arch"] not in args.arch]
        JSON_OUT.write_text(json.dumps(keep + [asdict(p) for p in points], indent=1) + "\n")
        points = [Point(**d) for d in keep] + points
    text = report(points, notes, not args.no_write)
    print(json.dumps([asdict(p) for p in points], indent=1) if args.json else text)


if __name__ == "__main__":
    main()

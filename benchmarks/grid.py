"""Shared plumbing of the training-grid benchmarks: claim files, result JSONs, mean +- std.

A grid benchmark trains many runs over several sessions: each finished run leaves a JSON under
``benchmarks/results/<bench>/<arch>/<run>.json`` and is skipped afterwards; an interrupted run
resumes from its per-epoch checkpoint. Several runner processes can share one grid: each claims
a run with a pid file before training it (two 1-thread runners use 2 cores better than one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from pathlib import Path


def claim_path(work: Path, r: dict) -> Path:
    return work / r["arch"] / r["name"] / "claimed-by.pid"


def claim(work: Path, r: dict) -> bool:
    """Claim a run for this process; a claim left by a runner that no longer exists is taken over."""
    path = claim_path(work, r)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = path.read_text().strip()
            if not pid.isdigit():
                return False  # being written by a runner that is claiming it right now
            try:
                os.kill(int(pid), 0)
                return False  # its runner is alive
            except ProcessLookupError:
                path.unlink(missing_ok=True)
                continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def run_grid(todo: list[dict], results: Path, work: Path, finish: Callable[[dict], dict], *, limit: int | None = None,
             threads: int | None = None, describe: Callable[[dict], str] = lambda res: "") -> None:
    """Train every unfinished, unclaimed run of ``todo`` with ``finish(run) -> result`` and save its JSON."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    for i, r in enumerate(todo[:limit]):
        out = results / r["arch"] / f"{r['name']}.json"
        if out.exists() or not claim(work, r):
            continue  # finished, or being trained by another runner
        try:
            res = finish(r)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=1, default=str) + "\n")
        finally:
            claim_path(work, r).unlink(missing_ok=True)
        print(f"[{i + 1}/{len(todo)}] {r['name']}: {describe(res)}", flush=True)


def load_results(results: Path, arch: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / arch).glob("*.json"))]


def mean_std(v: list[float]) -> tuple[float, float]:
    m = sum(v) / len(v)
    return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0)


def fmt_mean_std(v: list[float]) -> str:
    if not v:
        return "-"
    m, s = mean_std(v)
    return f"{m:.4f} ± {s:.4f} (n={len(v)})" if len(v) > 1 else f"{m:.4f} (n=1)"


def grid_main(doc: str, archs: list[str], cmd_run: Callable[[argparse.Namespace], None],
              cmd_report: Callable[[argparse.Namespace], None], run_options: Callable[[argparse.ArgumentParser], None] = lambda p: None) -> None:
    """The ``run --arch A [--limit N] [--dry-run] [--threads T]`` / ``report [--no-write]`` command line."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--arch", choices=archs, required=True)
    r.add_argument("--limit", type=int, default=None, help="at most this many runs now")
    r.add_argument("--dry-run", action="store_true")
    r.add_argument("--threads", type=int, default=None, help="torch threads for this runner")
    run_options(r)
    rep = sub.add_parser("report")
    rep.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    cmd_run(args) if args.cmd == "run" else cmd_report(args)


def accuracy_panel(ax, runs: list[dict], key: str, values: tuple, series: tuple[tuple[str, str], ...],
                   x: Callable[[float], float] = lambda v: v) -> None:
    """Mean +- std test accuracy of each method over ``values`` of ``run[key]``, plus the dense baseline."""
    for method, style in series:
        vs = [v for v in values if any(r["method"] == method and r[key] == v for r in runs)]
        if not vs:
            continue
        ys = [mean_std([r["metrics"]["test_accuracy"] for r in runs if r["method"] == method and r[key] == v]) for v in vs]
        ax.errorbar([x(v) for v in vs], [y[0] for y in ys], yerr=[y[1] for y in ys], fmt=style, label=method, capsize=3)
    base = [r["metrics"]["test_accuracy"] for r in runs if r["method"] == "dense"]
    if base:
        ax.axhline(sum(base) / len(base), color="gray", lw=1, label="dense")
    ax.set_ylabel("test accuracy")


def plateau(runs: list[dict]) -> str:
    """Has accuracy stopped rising? The validation gain of each run's last two epochs over all before.

    Reported over all runs and per method, so a method whose runs were still improving when the
    budget ended is visible as such.
    """
    gains: dict[str, list[tuple[float, str]]] = {}
    for r in runs:
        h = [e["val_accuracy"] for e in r["metrics"]["history"] if e.get("val_accuracy") is not None]
        if len(h) > 2:
            gains.setdefault(r["method"], []).append((max(h[-2:]) - max(h[:-2]), r["name"]))
    every = [g for v in gains.values() for g in v]
    if not every:
        return ""
    top = max(every)
    per = "; ".join(f"{m}: {100 * sum(g for g, _ in v) / len(v):+.2f} pt mean, {100 * max(v)[0]:+.2f} max"
                    for m, v in gains.items())
    return (f"Plateau check: the last two epochs raised the best validation accuracy by {100 * top[0]:+.2f} pt at most "
            f"({top[1]}), {100 * sum(g for g, _ in every) / len(every):+.3f} pt on average over the {len(every)} runs "
            f"(per method: {per}).\n")

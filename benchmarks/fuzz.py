"""Fuzz fzpack's byte parsers: executions, line coverage and findings per target (issue 11).

    python benchmarks/fuzz.py --target container --runs 2000
    python benchmarks/fuzz.py --target all --runs 2000 --json benchmarks/results/fuzz.json
    python benchmarks/fuzz.py --target all --seconds 600 --write-results

Targets (benchmarks/fuzz_targets.py): container (restore / inspect / verify of a `.fzp` given as
bytes), header, tree, mask, values, lossy, q8_index, index, fl (``fzpack.fl.decode_update``
against a fixed base); ``mux`` is all of them in one process behind a selector byte. Seeds come from formats/vectors. With atheris installed each target runs
in its own coverage-guided libFuzzer process (``--engine atheris``, the default when available);
otherwise, or with ``--engine mutator``, in this process with a seeded byte mutator. Afterwards
the seeds plus the corpus atheris grew are replayed under coverage.py to count the parser lines
reached. A finding is any exception other than FzpackError, an execution over 2 s, or memory
growth past the limit (fuzz_engine.py); each one's input lands in ``<workdir>/findings/``.
``--write-results`` replaces the fuzzing section of docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]

from fuzz_engine import atheris_child, line_coverage, run_mutator  # noqa: E402
from fuzz_targets import TARGETS  # noqa: E402

#: Findings of earlier runs and the commits that fixed them (docs/results.md lists them).
FIXED = [
    {"target": "tree", "finding": "RuntimeError from torch.device on a \"$device\" string torch refuses",
     "found": "a hand-made hostile tree, writing the harness", "fix": "c5e7b79", "regression": "tests/fuzz_regressions/tree--device-string-torch-refuses.bin"},
    {"target": "container", "finding": "ZeroDivisionError in inspect's LC description of a zero-length bank",
     "found": "a hand-made hostile file, writing the harness", "fix": "5afd1a3", "regression": "tests/fuzz_regressions/container--inspect-lc-zero-length-bank.bin"},
    {"target": "container", "finding": "KeyError restoring any complex128 tensor (16-byte items)",
     "found": "building the golden corpus (every dtype)", "fix": "47604e2", "regression": "tests/fuzz_regressions/container--complex128-restore.bin"},
    {"target": "(write faults)", "finding": "RuntimeError traceback from torch.save when the disk fills mid-checkpoint",
     "found": "the RLIMIT_FSIZE fault test", "fix": "41f69f5", "regression": "tests/test_write_faults.py::test_full_disk_during_training_checkpoint"},
    {"target": "header", "finding": "IndexError: a tensor's stream index in a file that declares no streams",
     "found": "the long atheris run (90 s per target)", "fix": "fa9b33f", "regression": "tests/fuzz_regressions/header--tensor-stream-without-streams.bin"},
]


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_atheris(target: str, runs: int | None, seconds: float | None, workdir: Path) -> dict:
    """One libFuzzer process for ``target``; its counters come back through a JSON file."""
    stats = workdir / f"stats-{target}.json"
    stats.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", target, "--workdir", str(workdir)]
    cmd += ["--runs", str(runs)] if runs is not None else []
    cmd += ["--seconds", str(seconds)] if seconds is not None else []
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    summary = json.loads(stats.read_text()) if stats.exists() else {"target": target, "engine": "atheris", "executions": 0,
                                                                      "findings": []}
    # The child's counters are flushed every 256 executions; libFuzzer's final stats have the exact count.
    m = re.search(r"stat::number_of_executed_units: (\d+)", proc.stderr)
    summary["executions"] = max(summary["executions"], int(m.group(1)) if m else 0)
    # exec_per_s stays the child's: the fuzzing loop's own rate (start-up excluded), what a long run gets
    summary["seconds"] = round(time.perf_counter() - start, 2)  # wall, process start-up and seed loading included
    artifacts = sorted(p for p in (workdir / "findings" / target).glob("*-*") if p.name.split("-")[0] in
                       ("crash", "timeout", "oom", "leak", "slow-unit"))
    for p in artifacts:  # what libFuzzer itself caught (a hard timeout, its RSS limit, a native crash)
        summary["findings"].append({"target": target, "kind": p.name.split("-")[0], "where": "libFuzzer",
                                    "message": proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else "",
                                    "input": str(p), "count": 1})
    if proc.returncode not in (0,) and not artifacts and not stats.exists():
        raise RuntimeError(f"atheris run of {target} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return summary


def results_markdown(report: dict) -> str:
    from common import md_table

    rows = [[s["target"], s["engine"], s["executions"], s["seconds"], s["exec_per_s"], len(s["findings"])]
            for s in report["targets"]]
    total = sum(s["executions"] for s in report["targets"])
    rows.append(["**all**", "", total, round(sum(s["seconds"] for s in report["targets"]), 1), "",
                 sum(len(s["findings"]) for s in report["targets"])])
    cov = report["coverage"]
    cov_rows = [[m, c, n, f"{100 * c / max(n, 1):.1f}%"] for m, (c, n) in cov["modules"].items()]
    cov_rows.append(["**parsers**", cov["covered"], cov["statements"], f"{cov['percent']}%"])
    found = [[f["target"], f["kind"], f["where"], f["message"][:90].replace("|", "\\|")]
             for s in report["targets"] for f in s["findings"]]
    fixed = [[f["target"], f["finding"], f["found"], f["fix"], f["regression"]] for f in FIXED]
    text = ["## Fuzzing the parsers (issue 11)", "",
            "Every entry point that parses bytes, fed mutated inputs seeded from `formats/vectors` "
            "(benchmarks/fuzz_targets.py). A finding is an exception other than `FzpackError`, an "
            "execution over 2 s, or memory growth past the limit; coverage is the statements of the "
            "parser modules reached by the seeds plus the corpus the run grew (coverage.py).", "",
            md_table(["target", "engine", "executions", "seconds", "exec/s", "findings"], rows), "",
            "seconds: wall time of the target's run, process start-up and seed loading included; exec/s: the "
            "fuzzing loop's own rate (what a long run sustains, before its corpus grows)."
            + (" A short check run: the goal is at least 1,000,000 executions over all targets with 0 findings."
               if total < 1_000_000 else ""), "",
            md_table(["parser module", "lines reached", "statements", "coverage"], cov_rows), ""]
    text += ["Findings in this run:", "", md_table(["target", "kind", "where", "message"], found) if found else "none", ""]
    if fixed:
        text += ["Bugs found while building the harnesses, the golden corpus and the fault tests, each with its fix "
                 "and regression test:", "",
                 md_table(["target", "finding", "found by", "fix commit", "regression test"], fixed), ""]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="all", help=f"one of {', '.join(TARGETS)}, or all")
    ap.add_argument("--runs", type=int, help="executions per target")
    ap.add_argument("--seconds", type=float, help="seconds per target")
    ap.add_argument("--engine", choices=("auto", "atheris", "mutator"), default="auto")
    ap.add_argument("--seed", type=int, default=0, help="mutator seed")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/fzpack-fuzz"), help="corpus and findings")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "fuzz.json", help="where the report goes")
    ap.add_argument("--write-results", action="store_true", help="replace the section of docs/results.md")
    ap.add_argument("--no-coverage", action="store_true", help="skip the coverage.py replay")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # inside the atheris subprocess: never returns
        atheris_child(args.child, args.runs, args.seconds, args.workdir, args.workdir / f"stats-{args.child}.json")
    if args.runs is None and args.seconds is None:
        ap.error("give --runs or --seconds")
    names = list(TARGETS) if args.target == "all" else [args.target]
    if any(n not in TARGETS and n != "mux" for n in names):
        ap.error(f"unknown target {args.target!r}; one of {', '.join(TARGETS)}, all")
    engine = "atheris" if args.engine == "atheris" or (args.engine == "auto" and have_atheris()) else "mutator"
    args.workdir.mkdir(parents=True, exist_ok=True)
    report: dict = {"engine": engine, "targets": []}
    for name in names:
        if engine == "atheris":
            s = run_atheris(name, args.runs, args.seconds, args.workdir)
        else:
            s = run_mutator(name, runs=args.runs, seconds=args.seconds, seed=args.seed, workdir=args.workdir)
        print(f"{name:10s} {s['executions']:>10,} executions {s['seconds']:>8.1f} s {s['exec_per_s']:>9,.0f}/s "
              f"{len(s['findings'])} findings", flush=True)
        for f in s["findings"]:
            print(f"    {f['kind']} at {f['where']}: {f['message']}  ({f['input']})", flush=True)
        report["targets"].append(s)
    report["executions"] = sum(s["executions"] for s in report["targets"])
    report["findings"] = sum(len(s["findings"]) for s in report["targets"])
    if not args.no_coverage:
        report["coverage"] = line_coverage(names, args.workdir)
        print(f"coverage: {report['coverage']['covered']:,} of {report['coverage']['statements']:,} parser statements "
              f"({report['coverage']['percent']}%)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.write_results:
        if "coverage" not in report:
            ap.error("--write-results needs the coverage replay")
        from common import write_section

        write_section("fuzz", results_markdown(report))
    return 1 if report["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())

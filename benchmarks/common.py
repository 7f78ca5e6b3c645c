"""Shared benchmark plumbing: machine facts, timing, and writing sections of docs/results.md.

Every benchmark writes its own marked section of docs/results.md, headed by the command that
produced it, the machine and the date, so a number in the docs can always be traced to a rerun.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results.md"
_PREAMBLE = """# fzpack results

Every table below was written by the benchmark command printed above it; rerun it to check.
Sections are replaced in place when their benchmark reruns.
"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, numpy {np.__version__}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def command() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def best_of(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Minimum wall time of ``repeat`` runs after ``warmup`` runs (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/results.md."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    text = RESULTS.read_text() if RESULTS.exists() else _PREAMBLE
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = (f"<!-- BEGIN {name} -->\n{body.rstrip()}\n\nCommand: `{command()}`  \n"
             f"Machine: {machine()}  \nDate: {stamp}\n<!-- END {name} -->")
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def md_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" ---: " if i else " --- " for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)

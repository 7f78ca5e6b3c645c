"""Shared benchmark plumbing: machine facts, timing, and writing sections of docs/results.md.

Every benchmark writes its own marked section of docs/results.md, headed by the command that
produced it, the machine and the date, so a number in the docs can always be traced to a rerun.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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


#: glibc mallopt parameters and the values set: every allocation of at least 1 MiB is a fresh mmap;
#: free heap memory is returned to the system only above 64 MiB (what glibc's dynamic rule reaches).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 1 << 20, 64 << 20

def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> int | None:
    """Make every allocation of at least `nbytes` a fresh mmap (glibc), so each run writes new pages.

    A restore writes its 61 MB of outputs into pages the process never touched, paying first-touch
    page faults. glibc's default mmap threshold is dynamic: once a large block is freed, blocks of up
    to that size (up to 32 MiB) come from the heap, so a benchmark run would often refill the pages the
    previous run just freed, and some rows would pay the page faults and others not (the same 16-tensor
    copy measured 5.5 ms in one run and 20 ms in another). A fixed threshold (which also stops the dynamic adjustment) makes
    every output >= 1 MiB (all but ~1 MB of VGG16-D) a fresh mapping. Smaller scratch buffers (numpy
    kernel chunks, dct temporaries) still come from the heap, and the trim threshold is raised to
    64 MiB so that their pages stay mapped between uses, as under the dynamic rule (a fixed mmap
    threshold leaves the trim threshold at 128 KiB, which made the numpy dct 4x slower by handing its
    temporaries back to the system after every chunk). Returns the mmap threshold set, or None where
    mallopt is unavailable (non-glibc).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        return nbytes if libc.mallopt(M_MMAP_THRESHOLD, nbytes) == 1 and ok else None
    except (OSError, AttributeError):
        return None

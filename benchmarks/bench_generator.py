"""Benchmark (issues 2 and 10): generator throughput per distribution beside a plain memory copy.

Every distribution regenerates the 16 conv/linear weight tensors of VGG16-D (CIFAR-10), 15,239,872
float32 values (61 MB), into fresh output tensors each run (as a restore allocates; all 16 outputs
stay alive until the run ends). VGG16-D as in FreezeNet's supplementary Fig. S11: 13 3x3 convs (64,
64, 128, 128, 256 x3, 512 x6) and Linear(512, 512), Linear(512, 512), Linear(512, 10) (the model's
5,258 biases and 10,496 BatchNorm parameters are trained and stored, never regenerated).

* normal, uniform, pm: FreezeNet-style schemes xavier_normal, xavier_uniform, pm_sigma.
* bank: every tensor is a slice (offset 0) of one shared U(-1, 1) bank times 1/sqrt(fan_in) (scheme
  "bank"); the bank is LCResNet's "recycled" bank, 1/16 of the largest tensor in whole 3x3 kernels
  (`fzpack.families.lc.bank_length(shapes, "recycled", 16)` = 147,456 values), so most of each
  tensor is the bank repeated.
* dct: the DCTpS matrix (spec 6.7) of each VGG16-D shape as it is: a weight (out, c_in, kh, kw) is
  rows 0..out-1, columns 0..c_in*kh*kw-1 of the N x N DCT-II matrix, N = max(out, c_in*kh*kw)
  (every VGG16-D shape is accepted; N <= 4608).
* random_mask, random_mask_rows: boolean masks with k = round(1 % of the tensor) entries
  (torch.bool output, 1 byte a value: their GB/s columns count 4 bytes a value like the others).

Each runs with the compiled (numba) kernel at every --threads count (generator threads,
`fzpack.generator.set_num_threads`) and with the pure-numpy reference kernel at 1 thread (fewer
repeats). The kernel is forced with `set_kernel` and checked: during the warm-up run every kernel
choice (`fzpack.generator.compiled.compiled_for`) is recorded and must have picked the kernel the
row is labelled with, so a silent fallback can never be reported as "compiled".

Beside them, memory baselines on the same 61 MB: `torch.empty` + `copy_` from an existing tensor
(as one tensor and as the 16 VGG16-D tensors), `torch.empty` + `fill_` / `zero_` (write
bandwidth), each at every --threads count (`torch.set_num_threads`, restored afterwards),
`np.empty` + `np.copyto` and `np.empty` + `fill` (numpy's allocator, which the generator's outputs
also come from: it asks for transparent huge pages, so first-touch page faults cost far less than
for `torch.empty`), and `copy_` into a reused tensor (bandwidth without allocation). glibc's mmap
threshold is fixed at 1 MiB first (`pin_mmap_threshold`), so every run writes into fresh pages as a
restore does, instead of the pages the previous run freed.

    python benchmarks/bench_generator.py                  # 15 repeats (numpy kernel: 3), prints a table
    python benchmarks/bench_generator.py --repeats 2      # quick look (--numpy-repeats: numpy kernel)
    python benchmarks/bench_generator.py --write          # also replaces its section of docs/results.md
    python benchmarks/bench_generator.py --json           # every number (all run times) as JSON
    python benchmarks/bench_generator.py --backend torch  # the torch-ops generator backend instead

Times are wall-clock per full regeneration of all 16 tensors; best is the least disturbed run,
median shows the noise of the machine. Only the warm-up run is untimed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from fzpack.families.lc import bank_length
from fzpack.generator import (InitSpec, compiled, generate, get_kernel, get_num_threads, init_spec, random_mask,
                              random_mask_rows, set_kernel, set_num_threads)

CONV_CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                 (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
LINEAR = [(512, 512), (512, 512), (512, 10)]
N_BIASES = sum(c for _, c in CONV_CHANNELS) + sum(o for _, o in LINEAR)
N_BATCHNORM = 2 * (sum(c for _, c in CONV_CHANNELS) + 512 + 512)
DISTS = ("normal", "uniform", "pm", "bank", "dct", "random_mask", "random_mask_rows")
SCHEME = {"normal": "xavier_normal", "uniform": "xavier_uniform", "pm": "pm_sigma", "bank": "bank", "dct": "dct",
          "random_mask": "k = 1 %", "random_mask_rows": "k = 1 %, equal per row"}
BANK_NAME = "bench.bank"
#: LCResNet's default recycled-bank fraction (LCConfig.bank_fraction).
BANK_FRACTION = 16
MASK_FRACTION = 0.01
SEED = 1
#: docs/results.md section; the name is historical (bench_format.py's speed section wrote it first).
SECTION = "format-speed"


def vgg16d_weight_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """(state_dict key, shape) of every conv/linear weight of VGG16-D for 10 classes."""
    shapes = [(f"features.{i}.weight", (cout, cin, 3, 3)) for i, (cin, cout) in enumerate(CONV_CHANNELS)]
    shapes += [(f"classifier.{i}.weight", (cout, cin)) for i, (cin, cout) in enumerate(LINEAR)]
    return shapes


def mask_k(shape: tuple[int, ...]) -> int:
    """Entries of a benchmark mask: 1 % of the tensor, at least 1."""
    return max(1, round(math.prod(shape) * MASK_FRACTION))


def workload(dist: str, shapes: list[tuple[str, tuple[int, ...]]], backend: str | None = None,
             seed: int = SEED) -> Callable[[], list[torch.Tensor]]:
    """A function regenerating every tensor of `shapes` with `dist`; returns the outputs (kept alive)."""
    if dist in ("random_mask", "random_mask_rows"):
        fn = random_mask if dist == "random_mask" else random_mask_rows
        jobs_m = [(name, shape, mask_k(shape)) for name, shape in shapes]
        return lambda: [fn(seed, name, shape, k, backend=backend) for name, shape, k in jobs_m]
    banks = None
    if dist == "bank":
        banks = {BANK_NAME: bank_length([s for _, s in shapes], "recycled", BANK_FRACTION)}
        specs = [init_spec("bank", shape, bank=BANK_NAME) for _, shape in shapes]
    elif dist == "dct":
        specs = [InitSpec("dct") for _ in shapes]
    elif dist in ("normal", "uniform", "pm"):
        specs = [init_spec(SCHEME[dist], shape) for _, shape in shapes]
    else:
        raise ValueError(f"unknown distribution {dist!r}; choose from {', '.join(DISTS)}")
    jobs = [(name, shape, spec) for (name, shape), spec in zip(shapes, specs)]
    return lambda: [generate(spec, seed, name, shape, banks=banks, backend=backend) for name, shape, spec in jobs]


def time_runs(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall times of `repeats` calls after `warmup` untimed ones; each result is freed after its timing."""
    for _ in range(warmup):
        out = fn()
        del out
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out
    return times


@contextmanager
def recorded_kernel_choices() -> Iterator[list[bool]]:
    """Record, for every range the generator regenerates, whether the compiled kernel was chosen."""
    choices: list[bool] = []
    original = compiled.compiled_for

    def spy(count: int) -> Any:
        module = original(count)
        choices.append(module is not None)
        return module

    compiled.compiled_for = spy  # regen.py and mask.py look it up on the module at every call
    try:
        yield choices
    finally:
        compiled.compiled_for = original


@contextmanager
def generator_config(kernel: str, threads: int) -> Iterator[None]:
    """Generator kernel ("compiled", "numpy"; "torch": the torch backend, torch threads) and threads."""
    torch_threads = torch.get_num_threads()
    set_kernel(None if kernel == "torch" else kernel)
    set_num_threads(threads)
    if kernel == "torch":
        torch.set_num_threads(threads)
    try:
        if kernel != "torch" and compiled.active() != kernel:
            raise AssertionError(f"asked for the {kernel} kernel but {compiled.active()} is active")
        yield
    finally:
        set_kernel(None)  # back to $FZPACK_KERNEL / the default
        set_num_threads(None)
        torch.set_num_threads(torch_threads)


def time_dist(dist: str, repeats: int, kernel: str, threads: int,
              shapes: list[tuple[str, tuple[int, ...]]] | None = None) -> list[float]:
    """Run times of `dist` on `shapes` (default VGG16-D) with `kernel` at `threads` threads.

    The warm-up run also checks that every kernel choice made the labelled kernel.
    """
    shapes = shapes or vgg16d_weight_shapes()
    with generator_config(kernel, threads):
        fn = workload(dist, shapes, backend="torch" if kernel == "torch" else None)
        if kernel == "torch":
            return time_runs(fn, repeats)
        with recorded_kernel_choices() as choices:
            fn()
        want = kernel == "compiled"
        if not choices or any(c != want for c in choices):
            used = sorted({"compiled" if c else "numpy" for c in choices}) or ["none"]
            raise AssertionError(f"{dist}: labelled {kernel} but the generator chose {'/'.join(used)} "
                                 f"({len(choices)} kernel choices)")
        return time_runs(fn, repeats, warmup=0)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def copy_baselines(shapes: list[tuple[str, tuple[int, ...]]], repeats: int,
                   threads: list[int]) -> list[dict[str, Any]]:
    """Plain memory operations on the same number of float32 values, fresh output each run."""
    n = sum(math.prod(s) for _, s in shapes)
    src = torch.rand(n, generator=torch.Generator().manual_seed(0))  # an existing, touched tensor
    src_np = src.numpy()
    views, at = [], 0
    for _, s in shapes:
        views.append(src[at : at + math.prod(s)].view(s))
        at += math.prod(s)
    reused = torch.empty(n)

    def np_copy() -> list[np.ndarray]:
        dst = np.empty(n, dtype=np.float32)
        np.copyto(dst, src_np)
        return [dst]

    def np_fill() -> list[np.ndarray]:
        dst = np.empty(n, dtype=np.float32)
        dst.fill(0.5)
        return [dst]

    torch_ops = [
        ("torch.empty + copy_, one 61 MB tensor", lambda: [torch.empty(n).copy_(src)]),
        ("torch.empty + copy_, the 16 VGG16-D tensors", lambda: [torch.empty(v.shape).copy_(v) for v in views]),
        ("torch.empty + fill_", lambda: [torch.empty(n).fill_(0.5)]),
        ("torch.empty + zero_", lambda: [torch.empty(n).zero_()]),
        ("copy_ into a reused tensor (no allocation)", lambda: [reused.copy_(src)]),
    ]
    rows = []
    for label, fn in torch_ops:
        for t in threads:
            with torch_threads(t):
                rows.append({"operation": label, "threads": t, "times": time_runs(fn, repeats)})
    rows.append({"operation": "np.empty + np.copyto", "threads": 1, "times": time_runs(np_copy, repeats)})
    rows.append({"operation": "np.empty + fill", "threads": 1, "times": time_runs(np_fill, repeats)})
    return rows


def _stats(times: list[float], n: int) -> dict[str, Any]:
    best, median = min(times), statistics.median(times)
    return {"runs": len(times), "seconds_min": best, "seconds_median": median, "times": times,
            "mvalues_per_s_min_time": n / best / 1e6, "mvalues_per_s_median_time": n / median / 1e6,
            "gb_per_s_f32_min_time": 4 * n / best / 1e9, "gb_per_s_f32_median_time": 4 * n / median / 1e9}


def measure(dists: list[str], kernels: list[str], threads: list[int], repeats: int, numpy_repeats: int,
            shapes: list[tuple[str, tuple[int, ...]]] | None = None, progress: bool = False) -> dict[str, Any]:
    """Every generator row and every memory baseline; the numbers `--json` prints."""
    shapes = shapes or vgg16d_weight_shapes()
    n = sum(math.prod(s) for _, s in shapes)
    configs = [(k, t) for k in kernels for t in ([1] if k == "numpy" else threads)]
    gen_rows = []
    for dist in dists:
        for kernel, t in configs:
            reps = min(repeats, numpy_repeats) if kernel == "numpy" else repeats
            times = time_dist(dist, reps, kernel, t, shapes)
            gen_rows.append({"dist": dist, "scheme": SCHEME[dist], "kernel": kernel, "threads": t, **_stats(times, n)})
            if progress:
                print(f"  {dist} {kernel} {t} thr: best {min(times) * 1e3:.1f} ms", file=sys.stderr, flush=True)
    copy_rows = [{**r, **_stats(r.pop("times"), n)} for r in copy_baselines(shapes, repeats, threads)]
    ref = {(r["operation"], r["threads"]): r["seconds_min"] for r in copy_rows}
    for r in gen_rows:
        r["vs_torch_copy"] = r["seconds_min"] / ref.get(("torch.empty + copy_, one 61 MB tensor", r["threads"]), math.nan)
        r["vs_np_copyto"] = r["seconds_min"] / ref[("np.empty + np.copyto", 1)]
    return {
        "model": "VGG16-D (CIFAR-10), conv/linear weights",
        "tensors": len(shapes),
        "values": n,
        "bytes_f32": 4 * n,
        "params_total": n + N_BIASES + N_BATCHNORM if len(shapes) == len(vgg16d_weight_shapes()) else None,
        "bank_length": bank_length([s for _, s in shapes], "recycled", BANK_FRACTION),
        "mask_entries": sum(mask_k(s) for _, s in shapes),
        "seed": SEED,
        "repeats": repeats,
        "numpy_repeats": min(repeats, numpy_repeats),
        "kernel_env": os.environ.get("FZPACK_KERNEL"),
        "generator": gen_rows,
        "memory": copy_rows,
    }


def tables(info: dict[str, Any]) -> tuple[str, str]:
    from common import md_table

    gen = md_table(
        ["distribution", "kernel", "threads", "runs", "best ms", "median ms", "M values/s", "GB/s (fp32)",
         "÷ torch copy_", "÷ np.copyto"],
        [[r["dist"], r["kernel"], r["threads"], r["runs"], r["seconds_min"] * 1e3, r["seconds_median"] * 1e3,
          r["mvalues_per_s_min_time"], r["gb_per_s_f32_min_time"], r["vs_torch_copy"], r["vs_np_copyto"]]
         for r in info["generator"]])
    mem = md_table(
        ["operation (same 61 MB)", "threads", "runs", "best ms", "median ms", "M values/s", "GB/s"],
        [[r["operation"], r["threads"], r["runs"], r["seconds_min"] * 1e3, r["seconds_median"] * 1e3,
          r["mvalues_per_s_min_time"], r["gb_per_s_f32_min_time"]] for r in info["memory"]])
    return gen, mem


def section_body(info: dict[str, Any]) -> str:
    gen, mem = tables(info)
    pinned = info.get("malloc_mmap_threshold")
    fresh = (f"glibc's mmap threshold is fixed at {pinned // 1024} KiB (`mallopt`), so every output of 1 MiB or "
             "more is a fresh mapping whose pages are touched for the first time, as in a restore, instead of "
             "the pages the previous run freed. " if pinned else
             "glibc's mmap threshold was left dynamic (mallopt unavailable): runs may reuse freed pages. ")
    return "\n".join([
        "## Generator throughput per distribution vs a plain memory copy (issues 2 and 10)\n",
        f"All {info['tensors']} VGG16-D conv/linear weights ({info['values']:,} float32 values, "
        f"{info['bytes_f32'] / 1e6:.1f} MB) regenerated on the CPU into fresh tensors each run (all outputs kept "
        "until the run ends, as a restore does); " + fresh + "Wall time per full regeneration after one untimed warm-up, "
        f"{info['repeats']} runs (numpy kernel: {info['numpy_repeats']}). M values/s and GB/s from the best run; "
        "GB/s counts 4 bytes a value (the masks write torch.bool, 1 byte a value). "
        "÷ torch copy_ / ÷ np.copyto: best time over the best time of the copy below (torch: same thread count). "
        "Kernels are forced with `set_kernel` and checked on every range during the warm-up; threads are "
        "generator threads (`set_num_threads`).\n",
        "normal / uniform / pm: xavier_normal / xavier_uniform / pm_sigma. bank: each tensor a slice (offset 0) "
        f"of one U(-1, 1) bank of {info['bank_length']:,} values (LCResNet's recycled bank, 1/16 of the largest "
        "tensor) times 1/sqrt(fan_in). dct: the DCTpS matrix of each shape as it is (rows `out`, columns "
        "c_in·kh·kw of the N x N DCT-II matrix, N = max of the two). random_mask / random_mask_rows: "
        f"k = 1 % of each tensor ({info['mask_entries']:,} entries in all).\n",
        gen,
        "\nMemory baselines on the same bytes, fresh output each run unless stated (torch threads via "
        "`torch.set_num_threads`; numpy is single-threaded). `np.empty` asks for transparent huge pages, "
        "`torch.empty` does not: the gap between them is first-touch page faults. The generator's outputs come "
        "from `np.empty`.\n",
        mem,
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description="fzpack generator throughput per distribution on VGG16-D's "
                                     "weights, beside a plain memory copy of the same bytes")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per row (default 15)")
    parser.add_argument("--numpy-repeats", type=int, default=3, help="timed runs for the numpy kernel (default 3)")
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated generator (and torch) thread counts for the compiled kernel, the "
                             "torch backend and the torch memory baselines (default 1,2); numpy runs at 1")
    parser.add_argument("--kernels", default="compiled,numpy", help="CPU kernels to measure (default compiled,numpy)")
    parser.add_argument("--backend", choices=["numpy", "torch"], default=None,
                        help="numpy (default): the CPU kernels; torch: the torch-ops backend instead")
    parser.add_argument("--dists", default=",".join(DISTS), help=f"default {','.join(DISTS)}")
    parser.add_argument("--json", action="store_true", help="print every number as one JSON object instead of tables")
    parser.add_argument("--write", action="store_true", help=f"replace the section {SECTION!r} of docs/results.md")
    args = parser.parse_args()

    dists = [d for d in args.dists.split(",") if d]
    unknown = sorted(set(dists) - set(DISTS))
    if unknown:
        parser.error(f"unknown distribution(s) {unknown}; choose from {', '.join(DISTS)}")
    try:
        threads = [int(t) for t in args.threads.split(",") if t]
    except ValueError:
        parser.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not threads or min(threads) < 1:
        parser.error("--threads needs positive thread counts")
    if args.backend == "torch":
        kernels = ["torch"]
    else:
        kernels = [k for k in args.kernels.split(",") if k]
        if not kernels or set(kernels) - {"compiled", "numpy"}:
            parser.error("--kernels takes compiled and/or numpy")
    if "compiled" in kernels and compiled.unavailable_reason() is not None:
        parser.error(f"the compiled kernel is unavailable ({compiled.unavailable_reason()}); use --kernels numpy")
    if args.repeats < 1 or args.numpy_repeats < 1:
        parser.error("--repeats and --numpy-repeats must be positive")

    from common import pin_mmap_threshold

    mmap_threshold = pin_mmap_threshold()
    info = measure(dists, kernels, threads, args.repeats, args.numpy_repeats, progress=not args.json)
    info.update({"malloc_mmap_threshold": mmap_threshold, "cpu_count": os.cpu_count(),
                 "machine": platform.processor() or platform.machine(), "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                 "kernel_default": get_kernel(), "threads_default": get_num_threads()})
    if args.write:
        from common import write_section

        write_section(SECTION, section_body(info))
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(section_body(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())

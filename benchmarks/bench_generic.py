"""Generic path (issue 10): streaming compress / restore of large plain checkpoints, vs torch and safetensors.

    python benchmarks/bench_generic.py                      # every full-size case; writes the section of docs/results.md
    python benchmarks/bench_generic.py --sizes 537mb        # one case (still writes the section; --no-write to only print)
    python benchmarks/bench_generic.py --quick --json       # tiny checkpoints (a few MB), one run each, prints only
    python benchmarks/bench_generic.py --dir /big/tmp --keep   # where the checkpoints go, and keep them

Checkpoints: plain state dicts (no `fzpack` entry: the generic lossless path), made with a
``torch.Generator`` of a fixed seed per case. Every layer is a ``dim x dim`` weight and a ``dim``
bias, each ``randn * 0.02`` drawn in float32 and then cast to the case's dtype (the scale of the
weights of a trained transformer; the values are noise, so no codec finds structure beyond the
float format itself). Written with ``torch.save``:

* ``537mb``: 16 layers of 4096 x 4096 bfloat16 + biases, 537,009,681 bytes (the issue's case);
* ``2gb``: 60 layers of 4096 x 4096 bfloat16 + biases, about 2.01 GB (the same kind, 3.75x larger);
* ``f32-268mb``: 16 layers of 2048 x 2048 float32 + biases;
* ``f16-134mb``: 16 layers of 2048 x 2048 float16 + biases;
* ``tiny-bf16`` / ``tiny-f32`` / ``tiny-f16`` (``--quick``): 4 layers of 512 x 512.

Per case, each operation runs alone in a fresh process (this script's worker mode), after the
imports and after running the same operation once on a tiny checkpoint of the same dtype (one-time
set-up: lazy imports, compiled-kernel loading), and is timed with its peak RSS above the RSS right
before it (VmHWM reset through /proc/self/clear_refs, as in bench_speed.py):

* ``fzpack.compress(model.pt, model.fzp)`` (memory-mapped, tensor by tensor, default level, lossless);
* ``fzpack.restore_file(model.fzp, out.pt)`` (what ``fzpack restore model.fzp -o out.pt`` runs: one
  tensor at a time), its output checked bit for bit against the input (every tensor's dtype, shape and
  bits, outside the timed part) after every run, so a wrong fast path is never timed;
* ``torch.load(weights_only=True)``, plain and with ``mmap=True`` (which reads no tensor bytes until used);
* ``torch.save`` and safetensors ``save_file`` of the state dict (loaded before the baseline), each
  followed by an fsync of its output inside the timed part (fzpack's writes are fsynced: write_atomic);
* safetensors ``load_file``: its default (mmap; lazy, like ``torch.load(mmap=True)``, since
  safetensors 0.8) and ``backend="pread"``, which reads every tensor into memory;

and, as a new user would see them, the wall time of the CLI commands ``fzpack compress model.pt -o
...`` and ``fzpack restore model.fzp -o out.pt`` in a fresh interpreter (start-up and imports
included). The warm-up run's time is reported too: the one-time set-up the first call in a process
pays (for restore -o, torch's FakeTensor machinery is imported then). Throughput is the .pt file
size over the time; MB = 10^6 bytes throughout. Files were just written, so they are in the page cache.

Bytes: the .fzp vs ZipNN (``zipnn.ZipNN(input_format="byte", bytearray_dtype=<the case's dtype>)``
on the safetensors file's bytes, as in fzpack.baselines.zipnn_row, round trip checked, timed) and
plain zstd of the same safetensors bytes (level 3; level 19 only for cases of at most
``--zstd19-max-mb``, default 300 MB: it runs at about 2 MB/s here), beside the torch.save and
safetensors file sizes.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import zstandard
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save_file as st_save_file

import fzpack
from bench_speed import _reset_peak, _status_kb, log
from common import best_of, machine, md_table, write_section
from fzpack.baselines.zipnn_row import zipnn_available
from fzpack.equality import tree_differences
from fzpack.restore import restore_file

SECTION = "generic-path"
TITLE = "Generic path: streaming compress / restore of large checkpoints (issue 10)"
MB = 1e6
# The targets (the throughput ones are stated for the 537 MB case)
PEAK_RATIO = 1.5  # peak RSS above the baseline / checkpoint size, for compress and for restore
COMPRESS_MBPS = 200.0
RESTORE_MBPS = 500.0


@dataclass(frozen=True)
class Case:
    name: str
    dtype: str  # torch dtype name: bfloat16, float16, float32
    layers: int
    dim: int
    seed: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``layers`` weights (dim x dim) and biases (dim), randn * 0.02 in float32 cast to the dtype."""
        g = torch.Generator().manual_seed(self.seed)
        sd = {}
        for i in range(self.layers):
            for name, shape in ((f"layers.{i}.weight", (self.dim, self.dim)), (f"layers.{i}.bias", (self.dim,))):
                sd[name] = (torch.randn(shape, generator=g) * 0.02).to(self.torch_dtype)
        return sd


CASES = {c.name: c for c in (
    Case("537mb", "bfloat16", 16, 4096, 10),
    Case("2gb", "bfloat16", 60, 4096, 11),
    Case("f32-268mb", "float32", 16, 2048, 12),
    Case("f16-134mb", "float16", 16, 2048, 13),
)}
TINY = {c.name: c for c in (
    Case("tiny-bf16", "bfloat16", 4, 512, 20),
    Case("tiny-f32", "float32", 4, 512, 21),
    Case("tiny-f16", "float16", 4, 512, 22),
)}
#: per dtype, the checkpoint every worker runs its operation on once before the measured run
WARM = {d: Case(f"warm-{d}", d, 2, 64, 30) for d in ("bfloat16", "float16", "float32")}
ALL_CASES = {**CASES, **TINY, **{c.name: c for c in WARM.values()}}


@dataclass(frozen=True)
class Paths:
    pt: Path  # the checkpoint (torch.save)
    st: Path  # the same state dict as safetensors
    fzp: Path  # written by the compress operation
    restored: Path  # written by the restore operation
    saved_pt: Path  # written by torch.save
    saved_st: Path  # written by safetensors save_file
    cli_fzp: Path
    cli_restored: Path

    @classmethod
    def of(cls, name: str, d: Path) -> Paths:
        return cls(*(d / f"{name}{suffix}" for suffix in (
            ".pt", ".safetensors", ".fzp", ".restored.pt", ".saved.pt", ".saved.safetensors", ".cli.fzp", ".cli.restored.pt")))

    def outputs(self) -> list[Path]:
        return [self.restored, self.saved_pt, self.saved_st, self.cli_fzp, self.cli_restored]


def prepare(case: Case, d: Path) -> Paths:
    """Write the case's checkpoint (.pt) and its safetensors copy; the state dict is freed on return."""
    p = Paths.of(case.name, d)
    sd = case.state_dict()
    torch.save(sd, p.pt)
    st_save_file(sd, str(p.st))
    return p


def prepare_warm(case: Case, d: Path) -> Paths:
    """The tiny warm-up checkpoint of the case's dtype, with its .fzp (written once per directory)."""
    w = WARM[case.dtype]
    p = Paths.of(w.name, d)
    if not p.fzp.exists():
        prepare(w, d)
        fzpack.compress(p.pt, p.fzp)
    return p


# ------------------------------------------------------------------------------------------
# The operations, and one of them timed with its peak RSS (in a worker process)
# ------------------------------------------------------------------------------------------

OPS = {  # op -> (column title, loads the state dict into memory before the baseline)
    "compress": ("fzpack compress", False),
    "restore": ("fzpack restore -o .pt", False),
    "torch_load": ("torch.load", False),
    "torch_load_mmap": ("torch.load mmap=True (lazy)", False),
    "torch_save": ("torch.save + fsync", True),
    "st_save_file": ("safetensors save_file + fsync", True),
    "st_load_file": ("safetensors load_file (mmap, lazy)", False),
    "st_load_file_pread": ("safetensors load_file backend=pread", False),
}


_HAS_BACKEND = "backend" in inspect.signature(st_load_file).parameters


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_op(op: str, p: Paths, sd: dict | None = None) -> object:
    """Run one operation on the case's files; returns what it made (kept alive until the peak is read)."""
    if op == "compress":
        return fzpack.compress(p.pt, p.fzp)
    if op == "restore":
        return restore_file(p.fzp, p.restored)
    if op == "torch_load":
        return torch.load(p.pt, weights_only=True)
    if op == "torch_load_mmap":
        return torch.load(p.pt, weights_only=True, mmap=True)
    if op == "st_load_file":
        return st_load_file(str(p.st))
    if op == "st_load_file_pread":  # reads every tensor into memory (safetensors >= 0.8; older: its only backend)
        return st_load_file(str(p.st), backend="pread") if _HAS_BACKEND else st_load_file(str(p.st))
    if op == "torch_save":
        torch.save(sd, p.saved_pt)
        return _fsync(p.saved_pt)
    if op == "st_save_file":
        st_save_file(sd, str(p.saved_st))
        return _fsync(p.saved_st)
    raise ValueError(f"unknown operation {op!r}")


def timed_op(op: str, p: Paths, warm: Paths | None = None) -> dict:
    """Seconds and peak RSS above the RSS right before the operation (bytes) of one run of ``op``.

    ``warm``: a tiny checkpoint to run the same operation on first (one-time set-up is not charged).
    """
    import resource

    needs_sd = OPS[op][1]
    warm_seconds = None
    if warm is not None:
        sd = torch.load(warm.pt, weights_only=True) if needs_sd else None
        # restore -o streams files over IN_MEMORY_PT_BYTES decoded and restores smaller ones in
        # memory: the tiny warm-up file is made to stream too, so that the streamed writer's
        # one-time set-up (FakeTensorMode's first use) is what the warm-up pays
        restore_mod = sys.modules["fzpack.restore"]
        keep = restore_mod.IN_MEMORY_PT_BYTES
        restore_mod.IN_MEMORY_PT_BYTES = -1 if os.path.getsize(p.pt) > keep else keep
        try:
            t = time.perf_counter()
            run_op(op, warm, sd)
            warm_seconds = time.perf_counter() - t
        finally:
            restore_mod.IN_MEMORY_PT_BYTES = keep
    sd = torch.load(p.pt, weights_only=True) if needs_sd else None
    gc.collect()
    before = _status_kb("VmRSS")
    exact = before is not None and _reset_peak()
    if not exact:  # no /proc: ru_maxrss (which may still hold an earlier, higher peak)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    result = run_op(op, p, sd)
    seconds = time.perf_counter() - t
    peak = _status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result, sd
    return {"op": op, "seconds": seconds, "peak_bytes": (peak - before) * 1024, "before_kb": before, "exact_peak": exact,
            "warm_seconds": warm_seconds}


def worker(op: str, name: str, d: Path) -> None:
    case = ALL_CASES[name]
    print(json.dumps(timed_op(op, Paths.of(name, d), Paths.of(WARM[case.dtype].name, d))))


def run_worker(op: str, case: Case, d: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", op, "--case", case.name, "--dir", str(d)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"worker {op} for {case.name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_cli(args: list[str]) -> float:
    """Wall seconds of one fzpack CLI command in a fresh interpreter (start-up and imports included)."""
    cmd = [sys.executable, "-c", "from fzpack_cli.main import cli; cli()", *args]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if res.returncode:
        raise RuntimeError(f"fzpack {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return seconds


def restored_differences(original: Path, restored: Path) -> list[str]:
    """How the restored file differs from the original (keys, order, dtypes, shapes, bits); empty if identical."""
    a = torch.load(original, weights_only=True, mmap=True)
    b = torch.load(restored, weights_only=True, mmap=True)
    return tree_differences(a, b)


def check_restored(original: Path, restored: Path) -> int:
    """Raise unless ``restored`` equals ``original`` bit for bit; returns the number of tensors checked."""
    diffs = restored_differences(original, restored)
    if diffs:
        raise AssertionError(f"{restored} differs from {original}: {diffs[:5]}")
    return len(torch.load(original, weights_only=True, mmap=True))


# ------------------------------------------------------------------------------------------
# Bytes: .fzp vs ZipNN and zstd
# ------------------------------------------------------------------------------------------


def zipnn_row(case: Case, st: bytes) -> dict | None:
    """ZipNN of the safetensors bytes with the case's dtype: size, seconds, round trip checked."""
    if not zipnn_available():
        return None
    import zipnn

    def codec() -> object:
        return zipnn.ZipNN(input_format="byte", bytearray_dtype=case.dtype)  # zipnn's names are torch's

    out: list[bytes] = []
    private = bytearray(st)  # ZipNN 0.5.x compress overwrites its input buffer in place
    t = time.perf_counter()
    out.append(bytes(codec().compress(private)))
    compress_s = time.perf_counter() - t
    del private
    back: list[bytes] = []
    decompress_s = best_of(lambda: back.append(bytes(codec().decompress(bytearray(out[0])))), repeat=1, warmup=0)
    if back[0] != st:
        raise AssertionError(f"ZipNN round trip of {case.name} is not exact")
    return {"bytes": len(out[0]), "compress_s": compress_s, "decompress_s": decompress_s}


def zstd_row(data: bytes, level: int) -> dict:
    t = time.perf_counter()
    n = len(zstandard.ZstdCompressor(level=level).compress(data))
    return {"bytes": n, "compress_s": time.perf_counter() - t}


def byte_sizes(case: Case, p: Paths, zstd19_max_mb: float) -> dict:
    """File sizes of the .pt, safetensors and .fzp, and ZipNN / zstd of the safetensors bytes."""
    st = p.st.read_bytes()
    out = {"pt": p.pt.stat().st_size, "safetensors": len(st), "fzp": p.fzp.stat().st_size,
           "zipnn": zipnn_row(case, st), "zstd3": zstd_row(st, 3), "zstd19": None}
    if len(st) <= zstd19_max_mb * MB:
        out["zstd19"] = zstd_row(st, 19)
    return out


# ------------------------------------------------------------------------------------------
# One case
# ------------------------------------------------------------------------------------------


def _remove(paths: list[Path]) -> None:
    for q in paths:
        q.unlink(missing_ok=True)


def measure(case: Case, args: argparse.Namespace, d: Path) -> dict:
    log(f"{case.name}: writing the checkpoint ({case.layers} x {case.dim}x{case.dim} {case.dtype} + biases)")
    prepare_warm(case, d)
    p = prepare(case, d)
    size = p.pt.stat().st_size
    runs: dict[str, list[dict]] = {op: [] for op in OPS}
    checked = 0
    for op in OPS:
        for i in range(args.repeat):
            _remove(p.outputs())
            log(f"{case.name}: {OPS[op][0]} (run {i + 1}/{args.repeat})")
            r = run_worker(op, case, d)
            runs[op].append(r)
            if op == "restore":
                tensors = check_restored(p.pt, p.restored)  # outside the timed part; raises on any difference
                checked += 1
    cli = {"compress": [], "restore": []}
    for i in range(args.repeat):
        _remove(p.outputs())
        log(f"{case.name}: CLI compress / restore in a fresh interpreter (run {i + 1}/{args.repeat})")
        cli["compress"].append(run_cli(["compress", str(p.pt), "-o", str(p.cli_fzp)]))
        cli["restore"].append(run_cli(["restore", str(p.fzp), "-o", str(p.cli_restored)]))
        if p.cli_fzp.read_bytes() != p.fzp.read_bytes():
            raise AssertionError("the CLI's .fzp differs from fzpack.compress's")
        check_restored(p.pt, p.cli_restored)
        checked += 1
    _remove(p.outputs())
    log(f"{case.name}: bytes (ZipNN, zstd)")
    sizes = byte_sizes(case, p, args.zstd19_max_mb)
    if not args.keep:
        _remove([p.pt, p.st, p.fzp])
    return summarise(case, size, tensors, checked, runs, cli, sizes)


def summarise(case: Case, size: int, tensors: int, checked: int, runs: dict[str, list[dict]], cli: dict[str, list[float]],
              sizes: dict) -> dict:
    """One case's result: per operation the fastest run's seconds and the largest peak, plus every run."""
    ops = {op: {"seconds": min(r["seconds"] for r in rs), "peak_bytes": max(r["peak_bytes"] for r in rs),
                "runs_seconds": [r["seconds"] for r in rs], "runs_peak_bytes": [r["peak_bytes"] for r in rs],
                "exact_peak": all(r["exact_peak"] for r in rs),
                "first_call_seconds": [r["warm_seconds"] for r in rs]} for op, rs in runs.items()}
    return {"case": asdict(case), "size": size, "tensors": tensors, "restores_checked": checked, "ops": ops,
            "cli_seconds": {k: min(v) for k, v in cli.items()}, "cli_runs_seconds": cli, "bytes": sizes}


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def _time_cell(seconds: float, size: int) -> str:
    return f"{seconds:,.2f} s ({size / MB / seconds:,.0f} MB/s)"


def _peak_cell(peak: int, size: int) -> str:
    return f"{peak / MB:,.0f} ({peak / size:.2f}x)"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def targets(res: dict) -> list[list[object]]:
    """The issue's targets beside the measured numbers of one case."""
    name, size, ops, b = res["case"]["name"], res["size"], res["ops"], res["bytes"]
    rows = []
    for op in ("compress", "restore"):
        ratio = ops[op]["peak_bytes"] / size
        rows.append([name, f"{op}: peak RSS / checkpoint size", f"<= {PEAK_RATIO}x", f"{ratio:.2f}x", _met(ratio <= PEAK_RATIO)])
    for op, goal in (("compress", COMPRESS_MBPS), ("restore", RESTORE_MBPS)):
        mbps = size / MB / ops[op]["seconds"]
        rows.append([name, f"{op}: throughput", f">= {goal:.0f} MB/s", f"{mbps:,.0f} MB/s", _met(mbps >= goal)])
    if b["zipnn"] is not None:
        rows.append([name, f".fzp bytes vs ZipNN ({res['case']['dtype']})", "<= ZipNN", f"{b['fzp'] / b['zipnn']['bytes']:.4f}x",
                     _met(b["fzp"] <= b["zipnn"]["bytes"])])
    return rows


def report(results: list[dict], args: argparse.Namespace) -> str:
    case_rows, time_rows, peak_rows, byte_rows, target_rows = [], [], [], [], []
    for res in results:
        c, size, ops, b = res["case"], res["size"], res["ops"], res["bytes"]
        case_rows.append([c["name"], c["dtype"], f"{c['layers']} x {c['dim']}x{c['dim']} + {c['layers']} x {c['dim']}",
                          res["tensors"], size, res["restores_checked"]])
        time_rows.append([c["name"]] + [_time_cell(ops[op]["seconds"], size) for op in OPS]
                         + [_time_cell(res["cli_seconds"][k], size) for k in ("compress", "restore")])
        peak_rows.append([c["name"]] + [_peak_cell(ops[op]["peak_bytes"], size) for op in OPS])
        z = b["zipnn"]
        zbytes = z["bytes"] if z else "n/a"
        byte_rows.append([c["name"], c["dtype"], b["pt"], b["safetensors"], b["fzp"], zbytes, b["zstd3"]["bytes"],
                          b["zstd19"]["bytes"] if b["zstd19"] else "skipped",
                          f"{b['fzp'] / z['bytes']:.4f}" if z else "n/a", f"{b['fzp'] / b['safetensors']:.4f}",
                          f"{z['compress_s']:.2f} / {z['decompress_s']:.2f}" if z else "n/a", f"{b['zstd3']['compress_s']:.2f}"])
        target_rows += targets(res)
    runs = f"best of {args.repeat} runs (peak: the largest of them)" if args.repeat > 1 else "one run"
    body = [
        f"## {TITLE}\n",
        "Plain state dicts (no `fzpack` entry: the generic lossless path), each layer a `dim x dim` weight and a `dim` bias of "
        "`randn * 0.02` drawn in float32 (fixed `torch.Generator` seed) and cast to the dtype, written with `torch.save`. "
        f"Each operation runs alone in a fresh process, after the imports and after the same operation on a tiny checkpoint "
        f"of the same dtype; {runs}. MB = 10^6 bytes; throughput = .pt size / time. Files were just written (page cache). "
        "`fzpack compress` memory-maps the .pt and codes tensor by tensor at the default level (lossless); `fzpack restore -o .pt` "
        "is `fzpack.restore_file`, one tensor at a time; every restored file was checked bit for bit (keys, dtypes, shapes, "
        "bits) against the input, outside the timed part. fzpack fsyncs its outputs, so `torch.save` and safetensors "
        "`save_file` are timed with an fsync of theirs. `torch.load mmap=True` and safetensors `load_file` (mmap, its "
        "default) read no tensor bytes until they are used; `backend=\"pread\"` reads them all.\n",
        "### Checkpoints\n",
        md_table(["case", "dtype", "layers", "tensors", ".pt bytes", "restored files checked bit-exact (API + CLI)"], case_rows),
        "\n### Time (throughput of the .pt size)\n",
        "The two CLI columns are the wall time of `fzpack compress model.pt -o ...` and `fzpack restore model.fzp -o out.pt` "
        "in a fresh interpreter, start-up and imports included (as a new user would see them).\n",
        md_table(["case"] + [OPS[op][0] for op in OPS] + ["CLI compress", "CLI restore -o"], time_rows),
        "\nOne-time set-up paid by the first call in a process (the warm-up run on a tiny checkpoint, not in the times "
        "above; the CLI columns include it), seconds: "
        + "; ".join(f"{r['case']['name']}: compress {max(r['ops']['compress']['first_call_seconds']):.2f}, restore -o "
                    f"{max(r['ops']['restore']['first_call_seconds']):.2f}" for r in results) + ".\n",
        "\n### Peak RSS above the baseline (MB, and / checkpoint size)\n",
        "VmHWM reset through /proc/self/clear_refs right before the operation, minus VmRSS then; the baseline is after the "
        "imports and the warm-up (and, for the two saves, after the state dict was loaded). Memory-mapped file pages that "
        "are resident count. The result of a load is still alive at the peak.\n",
        md_table(["case"] + [OPS[op][0] for op in OPS], peak_rows),
        "\n### Bytes: .fzp vs ZipNN and zstd\n",
        "ZipNN 0.5 (`ZipNN(input_format=\"byte\", bytearray_dtype=<dtype>)`, its default threads) and zstd (one thread) "
        "compress the safetensors file's bytes; ZipNN's round trip was checked. zstd-19 runs only on cases of at most "
        f"{args.zstd19_max_mb:g} MB (about 2 MB/s here).\n",
        md_table(["case", "dtype", "torch.save .pt", "safetensors", ".fzp", "ZipNN", "zstd-3", "zstd-19", ".fzp / ZipNN",
                  ".fzp / safetensors", "ZipNN compress / decompress (s)", "zstd-3 compress (s)"], byte_rows),
        "\n### The issue's targets\n",
        "Peak RSS above the baseline <= 1.5x the checkpoint size for compress and for restore; >= 200 MB/s compress and "
        ">= 500 MB/s restore at the default level (stated for the 537 MB case; shown for every case); lossless bytes at "
        "least as small as ZipNN's on float32, float16 and bfloat16.\n",
        md_table(["case", "target", "goal", "measured", "met / missed"], target_rows),
    ]
    return "\n".join(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", choices=list(CASES) + list(TINY),
                    help=f"cases to run (default: {' '.join(CASES)}; with --quick: {' '.join(TINY)})")
    ap.add_argument("--quick", action="store_true", help="tiny checkpoints, one run each; does not write docs/results.md")
    ap.add_argument("--json", action="store_true", help="also print every measured number as JSON")
    ap.add_argument("--dir", help="directory for the checkpoints (default: a new temporary directory under the system's)")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoints and the directory (its path is printed)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write docs/results.md")
    ap.add_argument("--repeat", type=int, help="runs per operation (default 3; 1 with --quick)")
    ap.add_argument("--zstd19-max-mb", type=float, default=300.0, help="zstd-19 only on cases of at most this size (default 300)")
    ap.add_argument("--worker", choices=list(OPS), help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.case, Path(args.dir))
        return
    names = args.sizes or list(TINY if args.quick else CASES)
    args.repeat = args.repeat or (1 if args.quick else 3)
    write = not (args.quick or args.no_write or any(n in TINY for n in names))
    log(f"machine: {machine()}")
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="fzpack-generic-", dir=args.dir)
    try:
        results = [measure(ALL_CASES[n], args, Path(tmp)) for n in names]
    finally:
        if args.keep:
            log(f"kept the files in {tmp}")
        else:
            shutil.rmtree(tmp)
    body = report(results, args)
    if write:
        write_section(SECTION, body)
    print(body)
    if args.json:
        print(json.dumps({"machine": machine(), "repeat": args.repeat, "results": results}, indent=2))
    log("done")


if __name__ == "__main__":
    main()

"""Speed benchmark: restore vs torch.load / safetensors, time to a usable model, peak memory.

    python benchmarks/bench_speed.py            # full run, writes the "speed" section of docs/results.md
    python benchmarks/bench_speed.py --quick    # fewer repeats, smaller saliency batch, prints only
    python benchmarks/bench_speed.py --json     # also print every measured number as JSON
    python benchmarks/bench_speed.py --device cuda   # also restore / load straight onto a GPU (prints only)

Models: LeNet-5-Caffe (1x28x28 inputs), VGG16-D (3x32x32) and ResNet34-tiny (3x64x64, 200
classes), frozen at q = 0.99 by `fzpack.families.freezenet.select_frozen` with the saliency of one random batch
(no dataset needed), then every trained entry and every bias moved a little (a stand-in for
training). Everything restores to the CPU.

Measured per model: file sizes (dense state dict as .pt, as safetensors, and the .fzp); compress
time (`fzpack.compress` of the checkpoint .pt); restore time (`fzpack.unpack` of the .fzp bytes,
with the default restore threads and with one; and `fzpack.restore_file` .fzp -> .pt on disk);
`torch.load(weights_only=True)` of the dense state dict from bytes; safetensors `load` (bytes) and
`load_file` (disk); the time to a usable model: (a) `fzpack.load_model(model.fzp)`, (b)
`torch.load` + `create_model(device="meta")` + `load_state_dict(assign=True)`, (c) safetensors
`load_file` + the same construction; and the peak memory and one-shot time of each operation, run alone in a fresh process (under the
default kernel choice, and with FZPACK_KERNEL=compiled), with the file page-cached and evicted
(cold reads: fsync + posix_fadvise DONTNEED). The in-process (steady-state) timings use
`--kernel` (default compiled). Files live in a temporary directory.

With ``--device cuda`` each model is also restored onto the GPU (`fzpack.unpack(data, device=...)`:
frozen weights regenerated there) after a check that it equals the CPU restore bit for bit, and
timed against `torch.load(map_location=...)`, safetensors `load_file(device=...)` and
`fzpack.load_model(device=...)`, every run ended by a device synchronisation.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save_file as st_save_file

import fzpack
from common import MMAP_THRESHOLD, best_of, machine, md_table, pin_mmap_threshold, write_section
from fzpack.families.freezenet import select_frozen as freeze_
from fzpack.generator.compiled import set_kernel
from fzpack.models.registry import create_model
from fzpack.restore import restore_file
from fzpack.unpack import get_restore_threads, set_restore_threads, unpack

#: name -> (input shape of one sample, number of classes)
MODELS = {
    "lenet5-caffe": ((1, 28, 28), 10),
    "vgg16-d": ((3, 32, 32), 10),
    "resnet34-tiny": ((3, 64, 64), 200),
}
#: glibc's largest mmap threshold (32 MiB on 64-bit): below it, freed blocks are reused by later runs.
RECYCLE_MMAP_THRESHOLD = 32 << 20
#: The issue's targets: restore in at most this many times torch.load of the dense checkpoint.
TARGETS = {"vgg16-d": 1.5, "resnet34-tiny": 1.5, "lenet5-caffe": 3.0}
_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def checkpoint(arch: str, seed: int, batch: int, rate: float = 0.99) -> dict:
    """FreezeNet checkpoint from one random batch's saliency; trained entries and biases nudged."""
    shape, classes = MODELS[arch]
    model = create_model(arch)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(batch, *shape, generator=g), torch.randint(0, classes, (batch,), generator=g)
    frozen = freeze_(model, (x, y), rate=rate, seed=seed)
    with torch.no_grad():  # stand-in for training: move every trained entry and every bias a little
        for n, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.01
            p.add_(noise * frozen[n].mask if n in frozen else noise)
    return fzpack.checkpoint.make_checkpoint(model, frozen, seed=seed, arch={"name": arch, "config": {}})


def write_files(arch: str, ck: dict, d: Path) -> dict[str, Path]:
    paths = {"ckpt": d / f"{arch}.ckpt.pt", "dense": d / f"{arch}.pt", "st": d / f"{arch}.safetensors", "fzp": d / f"{arch}.fzp"}
    fzpack.checkpoint.save_checkpoint(ck, paths["ckpt"])
    dense = {k: v.contiguous() for k, v in ck["state_dict"].items()}
    torch.save(dense, paths["dense"])
    st_save_file(dense, str(paths["st"]))
    fzpack.compress(paths["ckpt"], paths["fzp"])
    return paths


# ------------------------------------------------------------------------------------------
# Time to a usable model (the three ways)
# ------------------------------------------------------------------------------------------


def model_from_fzp(arch: str, paths: dict[str, Path]) -> torch.nn.Module:
    return fzpack.load_model(paths["fzp"])


def _adopt(arch: str, sd: dict) -> torch.nn.Module:
    # The same construction fzpack.load_model uses (module on "meta", tensors adopted), so the
    # comparison is between the loaders, not between a random init and none.
    model = create_model(arch, device="meta")
    model.load_state_dict(sd, assign=True)
    return model.eval()


def model_from_pt(arch: str, paths: dict[str, Path]) -> torch.nn.Module:
    return _adopt(arch, torch.load(paths["dense"], weights_only=True))


def model_from_safetensors(arch: str, paths: dict[str, Path]) -> torch.nn.Module:
    return _adopt(arch, st_load_file(str(paths["st"])))


# ------------------------------------------------------------------------------------------
# Peak memory: each operation alone in a fresh process (worker mode of this script)
# ------------------------------------------------------------------------------------------

MEMORY_OPS = {  # op -> (column title, reads the file into memory before the baseline)
    "restore": ("restore (unpack bytes)", True),
    "restore_compiled": ("restore (unpack bytes), FZPACK_KERNEL=compiled", True),
    "restore_path": ("fzpack.restore(path)", False),
    "torch_load_path": ("torch.load(path)", False),
    "torch_load": ("torch.load (bytes)", True),
    "st_load": ("safetensors load (bytes)", True),
    "st_load_file": ("safetensors load_file", False),
    "model_fzp": ("(a) load_model .fzp", False),
    "model_pt": ("(b) model + torch.load", False),
    "model_st": ("(c) model + safetensors", False),
    "compress": ("compress", False),
}


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS; Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _warm_up() -> None:
    """Run every code path once on tiny inputs, so one-time runtime set-up is not charged to the operation."""
    from safetensors.torch import save as st_save

    from fzpack.pack import pack

    create_model("lenet-300-100")  # an unrelated small model: the first module built pays ~40 MB of lazy set-up
    x = torch.ones(8, 8)
    tiny = {"w": x @ x, "b": torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3)).reshape(-1)}
    buf = io.BytesIO()
    torch.save(tiny, buf)
    torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    st_load(st_save(tiny))
    spec = fzpack.generator.InitSpec("normal", 0.0, 0.1)
    w, mask = fzpack.generator.generate(spec, 0, "w", (16, 16)), torch.zeros(16, 16, dtype=torch.bool)
    mask[::3, ::5] = True
    unpack(pack({"state_dict": {"w": w}, "fzpack": {"convention": 1, "seed": 0, "tensors": {
        "w": {"init": {**spec.to_dict(), "scheme": "normal"}, "mask": mask}}}}).data)


#: The file each operation reads (evicted from the page cache first in --cold mode).
OP_FILE = {"restore": "fzp", "restore_compiled": "fzp", "restore_path": "fzp", "torch_load": "dense", "torch_load_path": "dense",
           "st_load": "st", "st_load_file": "st", "model_fzp": "fzp", "model_pt": "dense", "model_st": "st", "compress": "ckpt"}
#: Operations timed with cold reads (the files a user's program opens).
COLD_OPS = ("restore_path", "torch_load_path", "st_load_file", "model_fzp", "model_pt", "model_st")


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache (posix_fadvise DONTNEED after fsync; no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def worker(op: str, arch: str, d: Path, cold: bool = False) -> None:
    import resource

    from fzpack.generator import compiled

    paths = {"ckpt": d / f"{arch}.ckpt.pt", "dense": d / f"{arch}.pt", "st": d / f"{arch}.safetensors", "fzp": d / f"{arch}.fzp"}
    _warm_up()  # tiny inputs: under the default (auto) kernel choice this does not import numba
    data = None
    if MEMORY_OPS[op][1]:
        data = paths[OP_FILE[op]].read_bytes()
    if op == "restore_compiled":
        compiled.set_kernel("compiled")  # after the warm-up: numba's import and cache load are charged to the op
    if cold:
        evict(paths[OP_FILE[op]])
    before = _status_kb("VmRSS")
    exact = before is not None and _reset_peak()
    if not exact:  # no /proc: ru_maxrss (which may still hold an earlier, higher peak)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if op in ("restore", "restore_compiled"):
        result = unpack(data)
    elif op == "restore_path":
        result = fzpack.restore(paths["fzp"])
    elif op == "torch_load_path":
        result = torch.load(paths["dense"], weights_only=True)
    elif op == "torch_load":
        result = torch.load(io.BytesIO(data), weights_only=True)
    elif op == "st_load":
        result = st_load(data)
    elif op == "st_load_file":
        result = st_load_file(str(paths["st"]))
    elif op == "model_fzp":
        result = model_from_fzp(arch, paths)
    elif op == "model_pt":
        result = model_from_pt(arch, paths)
    elif op == "model_st":
        result = model_from_safetensors(arch, paths)
    else:
        result = fzpack.compress(paths["ckpt"], d / f"{arch}.mem.fzp")
    seconds = time.perf_counter() - t
    peak = _status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    print(json.dumps({"op": op, "before_kb": before, "peak_kb": peak, "exact": exact, "seconds": seconds,
                      "kernel": compiled.active()}))


def _child(what: str, arch: str, d: Path, *flags: str) -> dict:
    """Run this script in a worker mode in a fresh process (FZPACK_KERNEL unset: the default
    choice, as a user gets it, unless the flags say otherwise); returns its last JSON line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *flags, "--arch", arch, "--dir", str(d)]
    env = {k: v for k, v in os.environ.items() if k != "FZPACK_KERNEL"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"{what} for {arch} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _run_worker(op: str, arch: str, d: Path, cold: bool) -> dict:
    return _child(f"worker {op}", arch, d, "--worker", op, *(["--cold"] if cold else []))


def fresh_process(arch: str, d: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Each operation alone in a fresh process: peak RSS (MB above the RSS right before it) and its
    one-shot time (s), page-cached; for COLD_OPS also the time with the file evicted first.
    Times are the fastest of `repeat` fresh processes, memory that of the first."""
    peak, once, cold = {}, {}, {}
    for op in MEMORY_OPS:
        runs = [_run_worker(op, arch, d, False) for _ in range(repeat)]
        peak[op] = (runs[0]["peak_kb"] - runs[0]["before_kb"]) / 1024
        once[op] = min(r["seconds"] for r in runs)
        if op in COLD_OPS:
            cold[op] = min(_run_worker(op, arch, d, True)["seconds"] for _ in range(repeat))
    return {"peak_mb": peak, "once_s": once, "cold_s": cold}


# ------------------------------------------------------------------------------------------
# Timings
# ------------------------------------------------------------------------------------------


def restore_breakdown(data: bytes, repeat: int) -> dict[str, float]:
    """One-thread restore split into regeneration (generate), mask decoding, values decoding, tree and the rest (seconds).

    Times the real restore with `generate`, the seed masks and the mask decoders (`decode_mask_positions`
    on the host, `decode_mask_device` for a GPU target) wrapped in timers; the fastest of ``repeat`` runs
    is kept.
    """
    import fzpack.unpack as U

    acc = {"regen": 0.0, "mask": 0.0, "values": 0.0, "tree": 0.0}
    masks = ("random_mask", "random_mask_rows", "decode_mask_positions", "decode_mask_device")
    originals = {name: getattr(U, name) for name in ("generate", "_decode", "_tree") + masks}

    def timed(fn, key):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[key] += time.perf_counter() - t
        return wrapper

    before = get_restore_threads()
    best = None
    try:
        set_restore_threads(1)
        U.generate = timed(originals["generate"], "regen")
        U._decode = timed(originals["_decode"], "values")  # entropy / zstd decoding of the values streams
        U._tree = timed(originals["_tree"], "tree")
        for name in masks:
            setattr(U, name, timed(originals[name], "mask"))
        unpack(data)  # warm-up
        for _ in range(repeat):
            for k in acc:
                acc[k] = 0.0
            t = time.perf_counter()
            unpack(data)
            total = time.perf_counter() - t
            if best is None or total < best["total"]:
                best = {"total": total, **acc}
    finally:
        for name, fn in originals.items():
            setattr(U, name, fn)
        set_restore_threads(before)
    best["rest"] = best["total"] - best["regen"] - best["mask"] - best["values"] - best["tree"]
    return best


def device_timings(data: bytes, dense: bytes, paths: dict[str, Path], device: str, repeat: int) -> dict[str, float]:
    """Seconds to restore / load onto `device` (each run ends with a synchronisation), after checking
    that the device restore equals the CPU restore bit for bit (a wrong fast path must not be timed)."""
    from fzpack.equality import tree_differences

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def synced(fn):
        def run():
            out = fn()
            sync()
            return out
        return run

    on_dev = unpack(data, device=dev).obj
    diffs = tree_differences(unpack(data).obj, _to_cpu(on_dev))
    if diffs:
        raise AssertionError(f"restore on {device} differs from the CPU restore: {diffs[:3]}")
    return {
        "restore": best_of(synced(lambda: unpack(data, device=dev)), repeat=repeat),
        "torch_load": best_of(synced(lambda: torch.load(io.BytesIO(dense), weights_only=True, map_location=dev)), repeat=repeat),
        "st_load_file": best_of(synced(lambda: st_load_file(str(paths["st"]), device=str(dev))), repeat=repeat),
        "model_fzp": best_of(synced(lambda: fzpack.load_model(paths["fzp"], device=dev)), repeat=repeat),
    }


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def measure(arch: str, args, d: Path) -> dict:
    log(f"{arch}: building the checkpoint (saliency of a batch of {args.batch})")
    ck = checkpoint(arch, seed=1, batch=args.batch)
    paths = write_files(arch, ck, d)
    sizes = {"dense_pt": paths["dense"].stat().st_size, "safetensors": paths["st"].stat().st_size, "fzp": paths["fzp"].stat().st_size,
             "elements": sum(v.numel() for v in ck["state_dict"].values()),
             "frozen": sum(t["mask"].numel() for t in ck["fzpack"]["tensors"].values())}
    del ck
    data, dense, st = paths["fzp"].read_bytes(), paths["dense"].read_bytes(), paths["st"].read_bytes()
    r = args.repeat
    t = {}
    log(f"{arch}: compress")
    t["compress"] = best_of(lambda: fzpack.compress(paths["ckpt"], d / "out.fzp"), repeat=max(1, r // 3))
    # Steady state (one process restoring again and again, compiled kernels) in fresh worker
    # processes, one per page regime: this process's heap, grown by the saliency and compress
    # steps above, would otherwise lend its freed pages to the "fresh pages" runs.
    for regime in ("fresh", "recycled"):
        log(f"{arch}: in-process timings, {regime} pages (worker process)")
        for key, value in _run_timings(arch, d, regime, args).items():
            t[key if regime == "fresh" else f"recycled_{key}"] = value
    breakdown = t.pop("breakdown", None)
    t.pop("recycled_breakdown", None)
    out = {"arch": arch, "sizes": sizes, "seconds": t}
    if args.device != "cpu":
        log(f"{arch}: restore / load onto {args.device}")
        out["device_seconds"] = device_timings(data, dense, paths, args.device, r)
    if breakdown is not None:
        out["breakdown"] = breakdown
    log(f"{arch}: one-shot time and peak memory (one fresh process per operation), warm and cold reads")
    out.update(fresh_process(arch, d, args.fresh_repeat))
    return out


def timings(arch: str, d: Path, regime: str, kernel: str, repeat: int) -> dict[str, float]:
    """The in-process (steady-state) timings, run in a worker process of their own (seconds).

    ``regime`` "fresh": glibc's mmap threshold fixed at 1 MiB, so every run writes pages it never
    touched (first-touch faults, as in a one-shot process); "recycled": fixed at 32 MiB, so a run
    reuses the pages the previous one freed (no tensor of these models is larger).
    """
    pinned = pin_mmap_threshold(MMAP_THRESHOLD if regime == "fresh" else RECYCLE_MMAP_THRESHOLD)
    set_kernel(kernel)
    paths = {"dense": d / f"{arch}.pt", "st": d / f"{arch}.safetensors", "fzp": d / f"{arch}.fzp"}
    data, dense, st = paths["fzp"].read_bytes(), paths["dense"].read_bytes(), paths["st"].read_bytes()
    r, t = repeat, {"pinned": 1.0 if pinned else 0.0}
    t["restore"] = best_of(lambda: unpack(data), repeat=r)
    before = get_restore_threads()
    try:
        set_restore_threads(1)
        t["restore_1t"] = best_of(lambda: unpack(data), repeat=r)
    finally:
        set_restore_threads(before)
    t["torch_load"] = best_of(lambda: torch.load(io.BytesIO(dense), weights_only=True), repeat=r)
    if regime == "recycled":
        return t
    t["restore_file"] = best_of(lambda: restore_file(paths["fzp"], d / "restored.pt"), repeat=max(1, r // 2))
    t["st_load"] = best_of(lambda: st_load(st), repeat=r)
    t["st_load_file"] = best_of(lambda: st_load_file(str(paths["st"])), repeat=r)
    t["model_fzp"] = best_of(lambda: model_from_fzp(arch, paths), repeat=r)
    t["model_pt"] = best_of(lambda: model_from_pt(arch, paths), repeat=r)
    t["model_st"] = best_of(lambda: model_from_safetensors(arch, paths), repeat=r)
    if arch == "vgg16-d":
        t["breakdown"] = restore_breakdown(data, r)
    return t


def _run_timings(arch: str, d: Path, regime: str, args) -> dict:
    return _child(f"timings worker ({regime})", arch, d, "--timings", regime, "--kernel", args.kernel, "--repeat", str(args.repeat))


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return seconds * 1e3


def report(results: list[dict], args) -> str:
    threads = get_restore_threads()
    pinned = all(r["seconds"].get("pinned") and r["seconds"].get("recycled_pinned") for r in results)
    size_rows, time_rows, model_rows, mem_rows = [], [], [], []
    for res in results:
        s, t, a = res["sizes"], res["seconds"], res["arch"]
        size_rows.append([a, s["elements"], s["frozen"], s["dense_pt"], s["safetensors"], s["fzp"], s["dense_pt"] / s["fzp"]])
        time_rows.append([a, ms(t["compress"]), ms(t["restore"]), ms(t["restore_1t"]), ms(t["restore_file"]), ms(t["torch_load"]),
                          ms(t["st_load"]), ms(t["st_load_file"]), t["restore"] / t["torch_load"]])
        model_rows.append([a, ms(t["model_fzp"]), ms(t["model_pt"]), ms(t["model_st"]), t["model_fzp"] / t["model_pt"],
                           t["model_fzp"] / t["model_st"]])
        mem_rows.append([a] + [res["peak_mb"][op] for op in MEMORY_OPS])
    body = [
        "## Speed: restore vs torch.load and safetensors, time to a usable model, peak memory\n",
        "q = 0.99; masks from the saliency of one random batch (no dataset), trained entries and biases nudged; "
        f"everything restored to the CPU; best of {args.repeat} runs after a warm-up (compress: best of {max(1, args.repeat // 3)}), "
        f"in one worker process per model and page regime with FZPACK_KERNEL={args.kernel} (steady state; one-shot runs in "
        "fresh processes are further down). "
        f"Restore = `fzpack.unpack` of the `.fzp` bytes (regeneration, mask decoding, object tree), with the default "
        f"{threads} restore thread(s) (`FZPACK_RESTORE_THREADS`) and with 1; torch.load / safetensors load the dense state dict. "
        "Files sit in a temporary directory and are in the page cache. "
        + ("In that worker glibc's mmap threshold is fixed at 1 MiB (`mallopt`, benchmarks/common.py `pin_mmap_threshold`), "
           "so every run of every loader writes its tensors into freshly mapped pages (first-touch page faults included, "
           "as in a one-shot process), not into the pages the previous run freed; the worker does nothing else before "
           "(no heap of freed pages to lend). Compress is timed in the parent with glibc's defaults.\n" if pinned else
           "glibc's mmap threshold stayed dynamic (mallopt unavailable): runs may reuse the pages earlier runs freed.\n"),
        "### Sizes (bytes)\n",
        md_table(["model", "state-dict elements", "frozen weights", "dense .pt", "safetensors", ".fzp", "dense / .fzp"], size_rows),
        "\n### Compress / restore / load (ms)\n",
        md_table(["model", "compress", f"restore ({threads} thr)", "restore (1 thr)", "restore .fzp -> .pt file", "torch.load (bytes)",
                  "safetensors load (bytes)", "safetensors load_file", "restore / torch.load"], time_rows),
        *([] if not pinned else [
            "\n### Restore vs torch.load when repeated runs recycle freed pages (ms)\n",
            "The same runs in a worker with glibc's mmap threshold at 32 MiB: every tensor of these models is smaller, so "
            "a run reuses the pages the previous one freed and pays no first-touch page faults (a process that loads "
            "the same model again and again). The table above is what a run on fresh pages costs.\n",
            md_table(["model", f"restore ({threads} thr)", "restore (1 thr)", "torch.load (bytes)", "restore / torch.load"],
                     [[r["arch"], ms(r["seconds"]["recycled_restore"]), ms(r["seconds"]["recycled_restore_1t"]),
                       ms(r["seconds"]["recycled_torch_load"]), r["seconds"]["recycled_restore"] / r["seconds"]["recycled_torch_load"]]
                      for r in results])]),
        "\n### Time to a usable model (ms; files on disk, page-cached)\n",
        "(a) `fzpack.load_model(model.fzp)`: read + regenerate + build the module; (b) `torch.load(weights_only=True)` + "
        "`create_model(device=\"meta\")` + `load_state_dict(assign=True)`; (c) safetensors `load_file` + the same construction. "
        "All three build the module on the meta device and adopt the loaded tensors (no throw-away random init), and "
        "return it in eval mode.\n",
        md_table(["model", "(a) .fzp", "(b) dense .pt", "(c) safetensors", "(a) / (b)", "(a) / (c)"], model_rows),
        "\n### Peak memory (MB)\n",
        "Each operation runs alone in a fresh process: peak resident memory during the operation (VmHWM, reset just "
        "before it through /proc/self/clear_refs) minus the resident memory right before it. That baseline is taken "
        "after the imports, after a warm-up that runs every loader on a tiny object and builds an unrelated small "
        "model (one-time runtime set-up, ~40 MB for the first module built, is not charged to the operation) and, for "
        "the from-bytes operations, after the file was read into memory. The result of the operation is still alive "
        "at the peak. (ru_maxrss is not used: in a child started by vfork/exec it can report the parent's peak.)\n",
        md_table(["model"] + [MEMORY_OPS[op][0] for op in MEMORY_OPS], mem_rows),
        "\n### One-shot: the operation once in a fresh process (ms)\n",
        "What a script or `fzpack restore` pays: the same fresh processes as the memory table (fastest of "
        f"{args.fresh_repeat}), under the default kernel choice (auto: numpy until the work pays for numba's ~0.7 s "
        "import, `fzpack.generator.compiled`) and with FZPACK_KERNEL=compiled (numba's import and cache load "
        "included). Page-cached files, and cold: the file evicted from the page cache (fsync + posix_fadvise "
        "DONTNEED) just before the operation.\n",
        md_table(["model", "restore bytes (auto)", "restore bytes (compiled)", "torch.load bytes", "restore(path)", "torch.load(path)",
                  "restore(path) cold", "torch.load(path) cold", "safetensors load_file cold", "(a) load_model cold",
                  "(b) dense .pt model cold", "(c) safetensors model cold"],
                 [[r["arch"]] + [ms(r["once_s"][op]) for op in ("restore", "restore_compiled", "torch_load", "restore_path", "torch_load_path")]
                  + [ms(r["cold_s"][op]) for op in ("restore_path", "torch_load_path", "st_load_file", "model_fzp", "model_pt", "model_st")]
                  for r in results]),
    ]
    if args.device != "cpu":
        body.append(f"\n### Straight onto {args.device} (ms; each run ends with a synchronisation)\n")
        body.append(md_table(["model", "restore", "torch.load (map_location)", "safetensors load_file", "load_model",
                              "restore / torch.load"],
                             [[r["arch"]] + [ms(r["device_seconds"][k]) for k in ("restore", "torch_load", "st_load_file", "model_fzp")]
                              + [r["device_seconds"]["restore"] / r["device_seconds"]["torch_load"]] for r in results]))
    vgg = next((r for r in results if r["arch"] == "vgg16-d"), None)
    if vgg is not None:
        b, t = vgg["breakdown"], vgg["seconds"]
        body.append(f"\n### VGG16-D restore breakdown (1 thread, fastest of {args.repeat})\n")
        body.append(md_table(["part", "ms", "share"], [
            ["regeneration (`generate`, all frozen tensors)", ms(b["regen"]), f"{100 * b['regen'] / b['total']:.0f} %"],
            ["mask decoding (`decode_mask_positions`, seed masks)", ms(b["mask"]), f"{100 * b['mask'] / b['total']:.0f} %"],
            ["stream decoding (`_decode`: trained values, other tensors, index; ANS / zstd planes)", ms(b["values"]), f"{100 * b['values'] / b['total']:.0f} %"],
            ["object tree (`_tree`)", ms(b["tree"]), f"{100 * b['tree'] / b['total']:.0f} %"],
            ["the rest (container header and checks, slicing, writing trained values)", ms(b["rest"]), f"{100 * b['rest'] / b['total']:.0f} %"],
            ["total", ms(b["total"]), "100 %"]]))
        body.append(f"\nTime to a usable model, VGG16-D: {ms(t['model_fzp']):.1f} ms from the .fzp vs {ms(t['model_pt']):.1f} ms "
                    f"from the dense .pt (ratio {t['model_fzp'] / t['model_pt']:.2f}).\n")
    body.append("\n### The issue's targets: restore / torch.load\n")
    rows = []
    for r in results:
        t, goal = r["seconds"], TARGETS[r["arch"]]
        fresh = t["restore"] / t["torch_load"]
        recycled = t["recycled_restore"] / t["recycled_torch_load"] if "recycled_restore" in t else float("nan")
        once = r["once_s"]["restore"] / r["once_s"]["torch_load"]
        met = [name for name, ratio in (("fresh pages", fresh), ("recycled pages", recycled), ("one-shot", once)) if ratio <= goal]
        rows.append([r["arch"], f"<= {goal}x", fresh, recycled, once,
                     "met" if len(met) == 3 else f"met for {', '.join(met)} only" if met else "missed"])
    body.append(md_table(["model", "target", f"fresh pages ({threads} thr)", f"recycled pages ({threads} thr)",
                          "one-shot process (auto)", "verdict"], rows))
    return "\n".join(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repeats, small saliency batch, do not write docs/results.md")
    ap.add_argument("--json", action="store_true", help="print every measured number as JSON")
    ap.add_argument("--device", default="cpu", help="also restore onto this device, e.g. cuda (prints only; default cpu: off)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), help="models to measure (default: all)")
    ap.add_argument("--kernel", default="compiled", choices=["compiled", "numpy", "auto"],
                    help="CPU kernels for the steady-state (repeated, in-process) timings (default: compiled)")
    ap.add_argument("--worker", choices=list(MEMORY_OPS), help=argparse.SUPPRESS)
    ap.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--timings", choices=["fresh", "recycled"], help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--arch", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.arch, Path(args.dir), args.cold)
        return
    if args.timings:
        print(json.dumps(timings(args.arch, Path(args.dir), args.timings, args.kernel, args.repeat)))
        return
    args.repeat = 2 if args.quick else 7
    args.batch = 16 if args.quick else 128
    args.fresh_repeat = 1 if args.quick else 3
    args.write = not args.quick and args.models == list(MODELS) and args.device == "cpu"
    log(f"machine: {machine()}; restore threads: {get_restore_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(arch, args, Path(tmp)) for arch in args.models]
    body = report(results, args)
    if args.write:
        write_section("speed", body)
    print(body)
    if args.json:
        print(json.dumps({"restore_threads": get_restore_threads(), "results": results}, indent=2))
    log("done")


if __name__ == "__main__":
    main()

"""Subprocess side of tests/test_write_faults.py: run fzpack in a process the test can starve, block or kill.

    python fault_driver.py block NTH LIMIT cli ARGS...        # the CLI; block in the NTH atomic write
    python fault_driver.py block NTH LIMIT train CONFIG OUT   # fzpack.train.train(TrainConfig(**CONFIG), OUT)
    python fault_driver.py write SRC OUT COUNT               # compress SRC to OUT, COUNT times
    python fault_driver.py read OUT SECONDS SHA...           # read OUT for SECONDS; every read must be one of SHA

``block``: the NTH file that ``fzpack.atomic.write_atomic`` opens (counting from 1; 0 = none)
gets ``LIMIT`` bytes, is flushed to disk, then the process prints ``BLOCKED <temp file>`` and
sleeps, so the test can SIGKILL it in the middle of the write. ``read`` prints a JSON summary.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path


class _Stall:
    """A file object that writes ``limit`` bytes, syncs them, reports, and never returns."""

    def __init__(self, f, limit: int) -> None:
        self._f, self._limit, self._n = f, limit, 0

    def write(self, b) -> int:
        b = bytes(b)
        if self._n + len(b) >= self._limit:
            self._f.write(b[: self._limit - self._n])
            self._f.flush()
            os.fsync(self._f.fileno())
            print(f"BLOCKED {os.readlink(f'/proc/self/fd/{self._f.fileno()}')}", flush=True)
            time.sleep(600)
        self._n += len(b)
        return self._f.write(b)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def _block(nth: int, limit: int) -> None:
    import fzpack.atomic

    real = os.fdopen
    count = 0

    def fdopen(fd, mode="r", *args, **kwargs):
        nonlocal count
        f = real(fd, mode, *args, **kwargs)
        count += 1
        return _Stall(f, limit) if count == nth else f

    fzpack.atomic.os = type(sys)("os_with_stall")  # only fzpack.atomic sees the patched fdopen
    fzpack.atomic.os.__dict__.update(os.__dict__)
    fzpack.atomic.os.fdopen = fdopen


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "block":
        _block(int(argv[1]), int(argv[2]))
        if argv[3] == "cli":
            from fzpack_cli.main import cli

            sys.argv = ["fzpack", *argv[4:]]
            return cli()
        from fzpack.train import TrainConfig, train

        cfg = json.loads(argv[4])
        cfg["lr_drop_epochs"] = tuple(cfg.get("lr_drop_epochs", ()))
        train(TrainConfig(**cfg), argv[5])
        return 0
    if mode == "write":
        import torch

        import fzpack

        obj = torch.load(argv[1], weights_only=True)
        for _ in range(int(argv[3])):
            fzpack.compress(obj, argv[2])
        return 0
    if mode == "read":
        # reads until the test creates the stop file (its writers are done), then once more: a fixed
        # duration would end before slow writers on a loaded machine put a first file in place
        out, stop, allowed = Path(argv[1]), Path(argv[2]), set(argv[3:])
        reads = bad = missing = 0
        end = time.monotonic() + 600
        last = False
        while not last and time.monotonic() < end:
            last = stop.exists()
            try:
                data = out.read_bytes()
            except FileNotFoundError:
                missing += 1
                continue
            reads += 1
            if hashlib.sha256(data).hexdigest() not in allowed:
                bad += 1
        print(json.dumps({"reads": reads, "bad": bad, "missing": missing}))
        return 0
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

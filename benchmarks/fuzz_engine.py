"""Fuzzing engines for the harnesses of ``fuzz_targets``: atheris (coverage-guided) or a seeded mutator.

A *finding* is an exception other than :class:`fzpack.FzpackError` escaping a harness, an
execution slower than ``HANG_S`` seconds, or the process's peak memory growing past
``MEMORY_LIMIT`` above where it stood after the seeds ran (the harnesses pass a reader budget of
``fuzz_targets.BUDGET``; a parser that honours it never gets near the limit). Findings are
deduplicated by exception type and innermost fzpack frame, and each one's input is written to
``<workdir>/findings/<target>/``.

* ``run_mutator``: in-process, no dependency beyond the standard library: random byte-level
  mutations (bit flips, interesting integers, inserts, deletes, splices) of the seed corpus,
  reproducible from ``seed``. What CI runs when atheris is not installed.
* ``atheris_child``: the body of a subprocess that hands one harness to atheris/libFuzzer with
  the seeds as its corpus (atheris.Fuzz never returns, so each target runs in its own process);
  it writes its counters to a JSON file as it goes.
* ``line_coverage``: the parser lines a set of inputs reaches, measured with coverage.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from fzpack.errors import FzpackError

HANG_S = 2.0
MEMORY_LIMIT = 512 << 20  # peak RSS growth over the post-seed baseline that counts as a finding
_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 48, (1 << 63) - 1]


class Hang(Exception):
    """Raised by the interval timer in an execution that ran past HANG_S."""


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def _where(exc: BaseException) -> str:
    """The innermost frame inside fzpack (else the innermost frame): what makes two findings the same bug."""
    frames = traceback.extract_tb(exc.__traceback__)
    inner = [f for f in frames if "/fzpack/" in f.filename] or frames
    f = inner[-1] if inner else None
    return f"{Path(f.filename).name}:{f.lineno}" if f else "?"


class Recorder:
    """Counts executions of one target and keeps its distinct findings (input written to disk)."""

    def __init__(self, target: str, workdir: Path) -> None:
        self.target = target
        self.dir = workdir / "findings" / target
        self.executions = 0
        self.findings: dict[str, dict[str, Any]] = {}
        self.baseline: int | None = None

    def execute(self, run, data: bytes, timer: bool = True) -> None:
        self.executions += 1
        if timer:
            signal.setitimer(signal.ITIMER_REAL, HANG_S)
        start = time.perf_counter()
        try:
            run(data)
        except FzpackError:
            pass
        except Hang as e:
            self.record("hang", e, data, f"over {HANG_S} s")
        except Exception as e:  # noqa: BLE001 - every other exception is what we are looking for
            self.record("exception", e, data, f"{type(e).__name__}: {str(e)[:200]}")
        finally:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, 0)
        if not timer and time.perf_counter() - start > HANG_S:
            self.record("hang", None, data, f"{time.perf_counter() - start:.1f} s")
        if self.baseline is not None and _maxrss() - self.baseline > MEMORY_LIMIT:
            self.record("memory", None, data, f"peak RSS grew {(_maxrss() - self.baseline) >> 20} MiB")
            self.baseline = _maxrss()  # report each jump once

    def record(self, kind: str, exc: BaseException | None, data: bytes, message: str) -> None:
        where = _where(exc) if exc is not None else "-"
        key = f"{kind}:{type(exc).__name__ if exc else ''}:{where}"
        if key in self.findings:
            self.findings[key]["count"] += 1
            return
        sha = hashlib.sha1(data).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{sha}.bin"
        path.write_bytes(data)
        tb = "".join(traceback.format_exception(exc)) if exc is not None else message
        (self.dir / f"{sha}.txt").write_text(f"{self.target} {kind}: {message}\n\n{tb}")
        self.findings[key] = {"target": self.target, "kind": kind, "where": where, "message": message,
                              "input": str(path), "count": 1}

    def summary(self, seconds: float, engine: str) -> dict[str, Any]:
        return {"target": self.target, "engine": engine, "executions": self.executions, "seconds": round(seconds, 2),
                "exec_per_s": round(self.executions / seconds, 1) if seconds else 0.0,
                "findings": list(self.findings.values())}


def _on_alarm(signum, frame):  # noqa: ARG001
    raise Hang()


class Mutator:
    """Seeded byte-level mutations in the style of libFuzzer's default mutators."""

    def __init__(self, seed: int, corpus: list[bytes], tokens: list[bytes] = ()) -> None:
        self.rng = random.Random(seed)
        self.corpus = corpus or [b""]
        self.tokens = list(tokens) or [b"\x00"]

    def mutate(self, data: bytes) -> bytes:
        b = bytearray(data)
        for _ in range(self.rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
            self._one(b)
        return bytes(b)

    def _one(self, b: bytearray) -> None:
        r = self.rng
        op = r.randrange(10)
        if not b:
            b.extend(r.randbytes(r.randint(1, 8)))
            return
        i = r.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << r.randrange(8)
        elif op == 1:
            b[i] = r.randrange(256)
        elif op == 2:
            v = r.choice(_INTERESTING) + r.choice((-1, 0, 0, 1))
            width = r.choice((1, 2, 4, 8))
            b[i:i + width] = (v % (1 << (8 * width))).to_bytes(width, "little")
        elif op == 3:
            del b[i:i + r.randint(1, 16)]
        elif op == 4:
            b[i:i] = r.randbytes(r.randint(1, 16))
        elif op == 5:  # a LEB128 varint, the format's own length and count type
            v = r.choice(_INTERESTING + [r.randrange(1 << 20)])
            out = bytearray()
            while True:
                out.append((v & 0x7F) | (0x80 if v >> 7 else 0))
                v >>= 7
                if not v:
                    break
            b[i:i + r.randint(1, 3)] = out
        elif op == 6:  # splice with another seed
            other = r.choice(self.corpus)
            j = r.randrange(len(other) + 1)
            b[i:] = other[j:j + r.randint(1, 256)]
        elif op == 7:  # duplicate a chunk
            j = r.randrange(len(b))
            b[i:i] = b[j:j + r.randint(1, 32)]
        elif op == 8:  # a dictionary token, inserted or overwriting
            tok = r.choice(self.tokens)
            b[i:i + (len(tok) if r.random() < 0.5 else 0)] = tok
        else:
            b[:] = b[:i] if r.random() < 0.5 else b  # truncate


def run_mutator(target: str, *, runs: int | None = None, seconds: float | None = None, seed: int = 0,
                workdir: Path = Path("/tmp/fzpack-fuzz")) -> dict[str, Any]:
    """Fuzz one target in this process with the seeded mutator; returns its summary (see ``Recorder.summary``)."""
    from fuzz_targets import TOKENS, target as get_target

    t = get_target(target)
    corpus = t.seeds()
    rec = Recorder(target, workdir)
    old = signal.signal(signal.SIGALRM, _on_alarm)
    start = time.perf_counter()
    try:
        for data in corpus:
            rec.execute(t.run, data)
        rec.baseline = _maxrss()
        mut = Mutator(seed, corpus, TOKENS)
        while (runs is None or rec.executions < runs) and (seconds is None or time.perf_counter() - start < seconds):
            rec.execute(t.run, mut.mutate(mut.rng.choice(corpus)))
    finally:
        signal.signal(signal.SIGALRM, old)
    return rec.summary(time.perf_counter() - start, "mutator")


def atheris_child(target: str, runs: int | None, seconds: float | None, workdir: Path, stats: Path) -> None:
    """Run ``target`` under atheris (never returns); counters and findings go to ``stats`` as JSON."""
    import atheris

    with atheris.instrument_imports():
        import fuzz_targets  # noqa: F401 - instrumented so libFuzzer sees the parsers' edges
        import fzpack.codecs.lossy, fzpack.codecs.mask, fzpack.codecs.mask_decode, fzpack.codecs.q8  # noqa: E401,F401
        import fzpack.codecs.q8_index, fzpack.container.file, fzpack.container.tree, fzpack.fl.payload  # noqa: E401,F401
        import fzpack.inspect, fzpack.unpack, fzpack.verify  # noqa: E401,F401
    from fuzz_targets import TOKENS, target as get_target

    t = get_target(target)
    dict_file = workdir / "tokens.dict"
    dict_file.write_text("".join('"' + "".join(f"\\x{c:02x}" for c in tok) + '"\n' for tok in TOKENS))
    corpus_dir = workdir / "corpus" / target
    corpus_dir.mkdir(parents=True, exist_ok=True)
    for data in t.seeds():
        (corpus_dir / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)
    rec = Recorder(target, workdir)
    start = time.perf_counter()

    def flush() -> None:
        stats.write_text(json.dumps(rec.summary(time.perf_counter() - start, "atheris")))

    def one(data: bytes) -> None:
        if rec.executions == 200:  # the seeds have run: memory from here on is the parsers'
            rec.baseline = _maxrss()
        rec.execute(t.run, data, timer=False)  # libFuzzer owns SIGALRM (-timeout); we time it ourselves
        if rec.executions % 256 == 0 or len(rec.findings) != flush.count:
            flush.count = len(rec.findings)
            flush()

    flush.count = 0  # type: ignore[attr-defined]
    args = [sys.argv[0], str(corpus_dir), f"-timeout={int(HANG_S) + 8}", "-rss_limit_mb=8192", "-print_final_stats=1",
            f"-artifact_prefix={workdir / 'findings' / target}/", "-max_len=65536", f"-dict={dict_file}"]
    if runs is not None:
        args.append(f"-runs={runs}")
    if seconds is not None:
        args.append(f"-max_total_time={max(1, int(seconds))}")
    (workdir / "findings" / target).mkdir(parents=True, exist_ok=True)
    import atexit

    atexit.register(flush)
    atheris.Setup(args, one)
    atheris.Fuzz()


def line_coverage(names: list[str], workdir: Path) -> dict[str, Any]:
    """The parser lines each target's seeds plus its grown corpus reach (``fuzz_coverage.py`` in a fresh process).

    Returns:
        ``{"modules": {module: [covered, statements]}, "covered": n, "statements": m, "percent": p}``.
    """
    import subprocess

    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("fuzz_coverage.py")), str(workdir), *names],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def corpus_inputs(target: str, workdir: Path) -> list[bytes]:
    """The target's seeds plus whatever a previous atheris run added to its corpus directory."""
    from fuzz_targets import target as get_target

    inputs = get_target(target).seeds()
    d = workdir / "corpus" / target
    if d.is_dir():
        inputs += [p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()]
    return inputs

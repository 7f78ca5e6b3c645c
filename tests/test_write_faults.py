"""Faults while writing: a full disk, a read-only directory, SIGKILL mid-write, concurrent writers and readers.

Each test runs fzpack in a subprocess (tests/fault_driver.py, or the CLI) and checks what a user
relies on: one error line and exit code 1 (no traceback), nothing partial or corrupt under the
output's name (an older output stays byte for byte), the input untouched (SHA-256 before and
after), no temporary file left behind - except after a SIGKILL, where the temporary file stays
under its dot-name ``.<output>.<pid>.<random>.tmp`` until the next write of that output removes
it - and a training run killed while writing its resume checkpoint continues bit for bit.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fzpack
from fzpack.atomic import remove_stale_temps
from fzpack.checkpoint import save_checkpoint
from fzpack.equality import tree_differences
from fzpack.pack import pack

ROOT = Path(__file__).resolve().parent.parent
DRIVER = str(Path(__file__).with_name("fault_driver.py"))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "cli")])}
CLI = [sys.executable, "-m", "fzpack_cli.main"]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _listing(d: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted(d.iterdir()) if p.is_file()}


def _fsize(limit: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes fail with EFBIG
    return preexec


def _drop_dac_override() -> None:
    """As root, permission bits do not stop writes: drop CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH before exec."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):  # PR_CAPBSET_DROP = 24; root's capabilities after exec come from the bounding set
            if libc.prctl(24, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _one_line_error(proc: subprocess.CompletedProcess, *words: str, progress: bool = False) -> str:
    """Exit code 1, no traceback, one ``fzpack: ...`` line (``progress``: after the run's own epoch lines)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and lines and lines[-1].startswith("fzpack: "), proc.stderr
    assert len(lines) == 1 or (progress and not any(x.startswith("fzpack: ") for x in lines[:-1])), proc.stderr
    err = lines[-1]
    for w in words:
        assert w in err, err
    return err


@pytest.fixture(scope="module")
def files(tmp_path_factory, frozen_ckpt):
    d = tmp_path_factory.mktemp("src")
    save_checkpoint(frozen_ckpt, d / "model.pt")
    fzpack.compress(d / "model.pt", d / "model.fzp")
    return d


@pytest.fixture
def work(tmp_path, files):
    for name in ("model.pt", "model.fzp"):
        (tmp_path / name).write_bytes((files / name).read_bytes())
    return tmp_path


COMMANDS = {  # command, output, bytes the output needs (the RLIMIT_FSIZE below is smaller)
    "compress": (["compress", "model.pt", "-o", "out.fzp"], "out.fzp"),
    "restore-pt": (["restore", "model.fzp", "-o", "out.pt"], "out.pt"),
    "restore-safetensors": (["restore", "model.fzp", "--format", "safetensors", "-o", "out.safetensors"], "out.safetensors"),
}


@pytest.mark.parametrize("existing", [False, True], ids=["new", "over-existing"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_full_disk_is_one_error_and_leaves_everything_as_it_was(work, command, existing):
    args, out = COMMANDS[command]
    if existing:
        (work / out).write_bytes(b"an older output that must survive")
    before = _listing(work)
    proc = subprocess.run(CLI + args, cwd=work, env=ENV, capture_output=True, text=True, preexec_fn=_fsize(4096))
    _one_line_error(proc, f"cannot write {out}", "File too large")
    assert _listing(work) == before  # no temporary file, the old output and the input byte for byte


def test_full_disk_during_training_checkpoint(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    proc = subprocess.run(CLI + ["train", "--method", "freezenet", "--dataset", "synthetic", "--synthetic-size", "100",
                                 "--epochs", "1", "--device", "cpu", "--no-progress", "-o", str(out / "model.pt")],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, preexec_fn=_fsize(64 << 10))
    _one_line_error(proc, "cannot write", "model.resume.pt", "File too large", progress=True)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("command", ["compress", "restore-pt"])
def test_read_only_directory_is_one_error(work, command):
    args, out = COMMANDS[command]
    ro = work / "ro"
    ro.mkdir()
    (ro / out).write_bytes(b"old")
    ro.chmod(0o555)
    try:
        before = _listing(work), _listing(ro)
        proc = subprocess.run(CLI + args[:-1] + [f"ro/{out}"], cwd=work, env=ENV, capture_output=True, text=True,
                              preexec_fn=_drop_dac_override)
        _one_line_error(proc, f"cannot write ro/{out}", "Permission denied")
        assert (_listing(work), _listing(ro)) == before
    finally:
        ro.chmod(0o755)


def _run_blocked(cmd: list[str], cwd: Path) -> Path:
    """Start ``cmd`` (a fault_driver ``block`` call), wait until it stalls mid-write, SIGKILL it; returns the temp file."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        while line and not line.startswith("BLOCKED "):
            line = proc.stdout.readline()
        assert line.startswith("BLOCKED "), proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return Path(line.split(" ", 1)[1].strip())


@pytest.mark.parametrize("existing", [False, True], ids=["new", "over-existing"])
@pytest.mark.parametrize("command", ["compress", "restore-pt"])
def test_sigkill_mid_write_leaves_no_partial_output(work, command, existing):
    args, out = COMMANDS[command]
    if existing:
        (work / out).write_bytes(b"an older output that must survive")
    before = _listing(work)
    tmp = _run_blocked([sys.executable, DRIVER, "block", "1", "2000", "cli", *args], work)
    after = _listing(work)
    # The killed writer's temporary file is the only change: a dot-name beside the output, never its name.
    assert set(after) - set(before) == {tmp.name} and tmp.parent == work
    assert tmp.name.startswith(f".{out}.") and tmp.name.endswith(".tmp") and tmp.stat().st_size == 2000
    assert {k: v for k, v in after.items() if k != tmp.name} == before
    # The next write of the same output succeeds and removes the dead writer's temporary file.
    proc = subprocess.run(CLI + args, cwd=work, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not tmp.exists() and set(_listing(work)) == set(before) | {out}
    assert _sha(work / "model.pt") == before["model.pt"] and _sha(work / "model.fzp") == before["model.fzp"]
    if command == "compress":
        assert fzpack.verify(work / out, against=work / "model.pt").ok
    else:
        assert tree_differences(fzpack.restore(work / "model.fzp"), torch.load(work / out, weights_only=True)) == []


def test_stale_temp_files_of_live_writers_are_kept(tmp_path):
    live = tmp_path / f".out.fzp.{os.getpid()}.abc.tmp"
    live.write_bytes(b"mine")
    other = tmp_path / ".other.fzp.1.abc.tmp"
    other.write_bytes(b"another output's")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.fzp.{dead.stdout.strip()}.xyz.tmp"
    stale.write_bytes(b"dead")
    assert remove_stale_temps(tmp_path / "out.fzp") == [stale]
    assert live.exists() and other.exists()


def _cfg(epochs: int) -> dict:
    # the configuration of tests/test_train_resume.py (keep_best off: compare the weights after the last epoch)
    return dict(method="freezenet-wd", arch="lenet5-caffe", dataset="synthetic", synthetic_size=300, epochs=epochs,
                device="cpu", progress=False, seed=21, keep_best=False, lr_drop_epochs=[1], augment=True)


def test_training_killed_while_writing_its_resume_checkpoint_resumes_bit_for_bit(tmp_path):
    from fzpack.checkpoint import load_checkpoint
    from fzpack.train import TrainConfig, train

    def config(epochs: int) -> TrainConfig:
        return TrainConfig(**{**_cfg(epochs), "lr_drop_epochs": (1,)})

    whole = train(config(2), tmp_path / "a" / "model.pt")
    run = tmp_path / "b"
    run.mkdir()
    # Writes of a 2-epoch run: resume after epoch 1, resume after epoch 2, model.pt, metrics.json.
    # Kill in the second: the epoch-1 resume checkpoint must survive intact under its name.
    tmp = _run_blocked([sys.executable, DRIVER, "block", "2", "100000", "train", json.dumps(_cfg(2)),
                        str(run / "model.pt")], run)
    assert sorted(p.name for p in run.iterdir()) == sorted(["model.resume.pt", tmp.name])
    assert load_checkpoint(run / "model.resume.pt")["train"]["loop"]["epoch"] == 1
    lines: list[str] = []
    resumed = train(config(2), run / "model.pt", resume=True, log=lines.append)
    assert any("resumed from" in line and "after epoch 1" in line for line in lines)
    assert not tmp.exists()  # the resumed run's first write of that file removed the dead writer's temporary file
    assert tree_differences(whole.checkpoint["state_dict"], resumed.checkpoint["state_dict"]) == []
    assert tree_differences(whole.checkpoint["fzpack"]["tensors"], resumed.checkpoint["fzpack"]["tensors"]) == []
    a = load_checkpoint(tmp_path / "a" / "model.resume.pt")["train"]
    b = load_checkpoint(run / "model.resume.pt")["train"]
    assert tree_differences(a["model"], b["model"]) == [] and tree_differences(a["optimizer"], b["optimizer"]) == []


def test_concurrent_writers_and_readers_see_only_complete_files(tmp_path, frozen_ckpt):
    a, b = dict(frozen_ckpt), {**frozen_ckpt, "extra": "second writer"}
    save_checkpoint(a, tmp_path / "a.pt")
    save_checkpoint(b, tmp_path / "b.pt")
    shas = [hashlib.sha256(pack(x).data).hexdigest() for x in (a, b)]
    out = tmp_path / "out" / "model.fzp"
    out.parent.mkdir()
    procs = [subprocess.Popen([sys.executable, DRIVER, "write", str(tmp_path / f"{x}.pt"), str(out), "6"], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for x in "ab"]
    stop = tmp_path / "writers-done"
    reader = subprocess.Popen([sys.executable, DRIVER, "read", str(out), str(stop), *shas], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    stop.touch()
    seen = json.loads(reader.communicate(timeout=300)[0])
    assert seen["bad"] == 0 and seen["reads"] > 0, seen
    assert _sha(out) in shas
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.fzp"]  # no temporary file of either writer

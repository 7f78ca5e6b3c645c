"""Streaming restore to a file (``fzpack restore -o``): one tensor at a time, the same checkpoint as ``restore``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors import safe_open

import fzpack

import fzpack.stream_restore as stream_restore
from fzpack.equality import tree_differences
from fzpack.errors import FzpackError
from fzpack.pack import pack_file
from fzpack.restore import restore_file, to_safetensors_bytes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def always_stream(monkeypatch):
    """These tests are about the streamed writer: small files take it too (see test_small_pt_in_memory)."""
    monkeypatch.setattr(importlib.import_module("fzpack.restore"), "IN_MEMORY_PT_BYTES", -1)
FILES = sorted(p.relative_to(ROOT / "formats" / "vectors").as_posix() for p in (ROOT / "formats" / "vectors").rglob("*.fzp"))


def _shared(obj, path="", seen=None, out=None) -> list[tuple[str, ...]]:
    """Groups of paths that hold the very same tensor object (tied weights stay tied)."""
    seen, out = ({}, []) if seen is None else (seen, out)
    if isinstance(obj, torch.Tensor):
        seen.setdefault(id(obj), []).append(path)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _shared(v, f"{path}/{k}", seen, out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _shared(v, f"{path}/{i}", seen, out)
    return sorted(tuple(p) for p in seen.values() if len(p) > 1) if path == "" else []


@pytest.mark.parametrize("name", FILES)
def test_streamed_pt_is_the_restored_checkpoint(tmp_path, name):
    src = ROOT / "formats" / "vectors" / name
    ref = fzpack.restore(src)
    report = restore_file(src, tmp_path / "out.pt")
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert tree_differences(ref, got) == []
    assert _shared(got) == _shared(ref)
    assert report.output_bytes == (tmp_path / "out.pt").stat().st_size
    assert os.listdir(tmp_path) == ["out.pt"]


@pytest.mark.parametrize("name", FILES)
def test_streamed_safetensors_hold_what_the_in_memory_writer_holds(tmp_path, name):
    src = ROOT / "formats" / "vectors" / name
    ref = fzpack.restore(src)
    try:
        want = to_safetensors_bytes(ref)
    except FzpackError as e:
        with pytest.raises(FzpackError, match=str(e)[:30]):
            restore_file(src, tmp_path / "out.safetensors", format="safetensors")
        assert os.listdir(tmp_path) == []
        return
    restore_file(src, tmp_path / "out.safetensors", format="safetensors")
    data = (tmp_path / "out.safetensors").read_bytes()
    assert tree_differences(st_load(want), st_load(data)) == []
    with safe_open(tmp_path / "out.safetensors", "pt") as f:
        meta = f.metadata()
    (tmp_path / "want.safetensors").write_bytes(want)
    with safe_open(tmp_path / "want.safetensors", "pt") as f:
        assert meta == f.metadata()


def test_without_torchs_serializer_internals_pt_is_written_from_memory(tmp_path, monkeypatch):
    src = ROOT / "formats" / "vectors" / "generic.fzp"
    monkeypatch.setattr(stream_restore, "torch_streaming_available", lambda: False)
    restore_file(src, tmp_path / "out.pt")
    assert tree_differences(fzpack.restore(src), torch.load(tmp_path / "out.pt", weights_only=True)) == []


@pytest.mark.parametrize("format", ["pt", "safetensors"])
def test_a_damaged_file_leaves_no_output(tmp_path, format):
    data = bytearray((ROOT / "formats" / "vectors" / "frozen_normal.fzp").read_bytes())
    cases = {"truncated": bytes(data[:-7]), "flipped": bytes(data[:-3] + bytes([data[-3] ^ 0x40]) + data[-2:])}
    for label, body in cases.items():
        (tmp_path / "bad.fzp").write_bytes(body)
        with pytest.raises(FzpackError):
            restore_file(tmp_path / "bad.fzp", tmp_path / f"out.{format}", format=format)
        assert os.listdir(tmp_path) == ["bad.fzp"], label
    with pytest.raises(FzpackError):
        restore_file(tmp_path / "missing.fzp", tmp_path / "out.pt")


def test_a_budget_below_the_output_is_refused_before_writing(tmp_path):
    ck = {"w": torch.randn(1000, 100)}
    pack_file(ck, tmp_path / "m.fzp")
    with pytest.raises(FzpackError):
        restore_file(tmp_path / "m.fzp", tmp_path / "out.pt", max_bytes=300_000)
    assert not (tmp_path / "out.pt").exists()
    restore_file(tmp_path / "m.fzp", tmp_path / "out.pt", max_bytes=2_000_000)


_CAPPED = textwrap.dedent("""
    import resource, sys
    import numpy, torch, zstandard
    import torch._subclasses.fake_tensor
    from fzpack.restore import restore, restore_file
    restore_file(sys.argv[3], sys.argv[3] + ".warm.pt")  # every lazy import and thread pool, before the cap
    size = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) << 10
    cap = size + (int(sys.argv[2]) << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    restore_file(sys.argv[1], sys.argv[1] + ".pt")
    print("streamed")
    try:
        restore(sys.argv[1])
    except MemoryError:
        print("whole restore refused")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_a_checkpoint_larger_than_the_memory_cap_restores_to_a_file(tmp_path):
    """192 MiB of tensors restore under an address-space cap of 128 MiB above the warmed-up process.

    The same process then fails to restore the file into memory, so the cap is real.
    """
    n = 4 << 20
    x = torch.arange(n, dtype=torch.int32)
    ck = {f"w{i}": x * (2 * i + 1) for i in range(12)}  # 16 MiB each
    pack_file(ck, tmp_path / "big.fzp")
    del ck, x
    pack_file({"w": torch.randn(1000)}, tmp_path / "tiny.fzp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", _CAPPED, str(tmp_path / "big.fzp"), "128", str(tmp_path / "tiny.fzp")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[:2] == ["streamed", "whole restore refused"]
    out = torch.load(tmp_path / "big.fzp.pt", weights_only=True, mmap=True)
    x = torch.arange(n, dtype=torch.int32)
    for i in (0, 7, 11):
        assert torch.equal(out[f"w{i}"], x * (2 * i + 1))
    assert sorted(out) == sorted(f"w{i}" for i in range(12))


@pytest.mark.parametrize("format", ["pt", "safetensors"])
def test_a_stream_that_fails_to_decode_after_tensors_were_written_leaves_no_output(tmp_path, format):
    from conftest import rebuild_container
    from fzpack.container.file import read_container
    from fzpack.pack import pack

    data = pack({"a": torch.randn(100_000), "b": torch.arange(70_000), "c": torch.randn(50)}).data
    for i in range(len(read_container(data)[0].streams)):  # every stream cut in half, checksums made valid again
        bad = rebuild_container(data, lambda h, stored: stored.__setitem__(i, stored[i][: len(stored[i]) // 2]))
        (tmp_path / "bad.fzp").write_bytes(bad)
        with pytest.raises(FzpackError, match=f"stream {i}"):
            restore_file(tmp_path / "bad.fzp", tmp_path / f"out.{format}", format=format)
        assert os.listdir(tmp_path) == ["bad.fzp"]


def test_the_streamed_budget_counts_streams_held_across_tensors_and_frozen_masks(tmp_path):
    from fzpack.container.file import read_container, restored_bytes, streamed_bytes

    # a and c share the float32 stream, b and d the float16 one: both are decoded while the other is in use
    ck = {"a": torch.randn(3000), "b": torch.randn(2000).half(), "c": torch.randn(1000), "d": torch.randn(500).half()}
    pack_file(ck, tmp_path / "m.fzp")
    h, _ = read_container((tmp_path / "m.fzp").read_bytes())
    assert len(h.streams) == 2
    out = 4 * 4000 + 2 * 2500
    need = out + 4 * 3000 + 4 * 4000 + (4 * 4000 + 2 * 2500)  # output, largest tensor, largest stream, both shared
    assert streamed_bytes(h) == need
    with pytest.raises(FzpackError, match="memory"):
        restore_file(tmp_path / "m.fzp", tmp_path / "out.pt", max_bytes=need - 1)
    restore_file(tmp_path / "m.fzp", tmp_path / "out.pt", max_bytes=need)

    frozen = ROOT / "formats" / "vectors" / "frozen_normal.fzp"
    h, _ = read_container(frozen.read_bytes())
    masks = sum(t.numel for t in h.tensors if t.kind == 1)
    assert masks > 0 and streamed_bytes(h) >= masks + sum(t.numel * t.dtype.itemsize for t in h.tensors if t.kind != 2)
    assert streamed_bytes(h) <= restored_bytes(h) + masks + max(t.numel * t.dtype.itemsize for t in h.tensors)


def test_small_pt_in_memory_equals_the_streamed_file(tmp_path, monkeypatch):
    """Small checkpoints are restored in memory and written by torch.save (no FakeTensorMode, whose
    first use imports dynamo and sympy): the file loads to the same checkpoint as the streamed one."""
    src = ROOT / "formats" / "vectors" / "frozen_normal.fzp"
    restore_file(src, tmp_path / "streamed.pt")
    code = ("import sys; from fzpack.restore import restore_file; restore_file(sys.argv[1], sys.argv[2]); "
            "assert 'torch._dynamo' not in sys.modules, 'FakeTensorMode used'")
    out = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "memory.pt")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    a, b = (torch.load(tmp_path / n, weights_only=True) for n in ("streamed.pt", "memory.pt"))
    assert tree_differences(a, b) == [] and tree_differences(fzpack.restore(src), b) == []

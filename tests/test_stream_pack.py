"""Streaming compress: ``pack_file`` writes what ``pack`` returns while holding about one tensor at a time.

Large plain tensors get streams of their own, coded and written as they are reached; shared
streams are closed once they are full; the stream table follows the payload order. A path is
memory-mapped and each large tensor's pages are dropped once it is coded.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

import fzpack
import fzpack.pack as pack_module
from fzpack.checkpoint import load_mapped, release_pages
from fzpack.container.file import read_container
from fzpack.container.layout import ALIAS, FROZEN, PLAIN
from fzpack.equality import tree_differences
from fzpack.errors import CheckpointError
from fzpack.pack import pack, pack_file

VECTORS = Path(__file__).resolve().parent.parent / "formats" / "vectors"


def _mixed() -> dict:
    """Every case the early-closing writer treats on its own: large, small, tied, strided, empty, 0-d."""
    g = torch.Generator().manual_seed(3)
    big = torch.randn(300, 250, generator=g)
    ck = {
        "w32": big,
        "tied": big,  # the same object: one ALIAS
        "w16": (torch.randn(400, 200, generator=g) * 0.02).to(torch.bfloat16),
        "h16": torch.randn(70_000, generator=g).half(),
        "ints": torch.randint(-9, 9, (40_000,), generator=g, dtype=torch.int64),
        "flags": torch.rand(300_000, generator=g) < 0.1,
        "strided": torch.randn(200, 400, generator=g).t(),  # not contiguous
        "nan": torch.tensor([float("nan"), -0.0, float("inf")] * 30_000),
        "empty": torch.zeros(0, 5),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "small": [torch.randn(37, generator=g) for _ in range(40)],
        "meta": {"step": 7, "name": "x", "t": (1, 2.5, None)},
    }
    ck["view"] = big[10:20]  # shares big's storage, another shape: plain data of its own
    return ck


@pytest.fixture(params=["default", "tiny"])
def thresholds(request, monkeypatch):
    """The writer's thresholds as shipped, and tiny ones that make every small stream close early too."""
    if request.param == "tiny":
        monkeypatch.setattr(pack_module, "OWN_STREAM_MIN", 1024)
        monkeypatch.setattr(pack_module, "SHARED_STREAM_MAX", 4096)
        monkeypatch.setattr(pack_module, "SLOW_BUDGET", 64 << 10)
    return request.param


def _check_layout(data: bytes) -> None:
    """Every stream is used, and a tensor's streams are where the table says (the reader checks the rest)."""
    h, payloads = read_container(data)
    used = set()
    for t in h.tensors:
        if t.kind != ALIAS:
            used.add(t.stream)
        if t.kind == FROZEN and t.n_exceptions:
            used.add(t.index_stream)
    assert used <= set(range(len(h.streams)))


def test_pack_file_writes_the_bytes_of_pack_and_restores_bit_for_bit(tmp_path, thresholds):
    ck = _mixed()
    data = pack(ck).data
    result = pack_file(ck, tmp_path / "m.fzp")
    assert (tmp_path / "m.fzp").read_bytes() == data
    assert result.size == len(data) and result.data is None
    _check_layout(data)
    back = fzpack.restore(data)
    assert tree_differences(ck, back) == []
    assert back["tied"] is back["w32"]
    assert sorted(os.listdir(tmp_path)) == ["m.fzp"]  # the spool is gone


def test_large_plain_tensors_get_their_own_streams_first(thresholds):
    ck = _mixed()
    h, _ = read_container(pack(ck).data)
    names = {t.name.lstrip("/"): t for t in h.tensors}
    own = [n for n in ("w32", "w16", "h16", "ints", "flags", "strided", "nan")
           if ck[n].numel() * ck[n].element_size() >= pack_module.OWN_STREAM_MIN]
    assert len(own) == (5 if thresholds == "default" else 7)
    assert [names[n].stream for n in own] == list(range(len(own)))  # closed in tensor order: first in the table
    for n in own:  # nobody else takes bytes from an own stream
        assert [t.name for t in h.tensors if t.kind == PLAIN and t.stream == names[n].stream] == [names[n].name]
    if thresholds == "tiny":  # the 40 small float32 tensors fill several shared streams
        small = {t.stream for t in h.tensors if t.name.startswith("/small/")}
        assert len(small) > 1


@pytest.mark.parametrize("values", ["lossless", "fp16", "q8"])
def test_frozen_checkpoints_renumber_mask_index_and_trained_streams(tmp_path, monkeypatch, values):
    monkeypatch.setattr(pack_module, "OWN_STREAM_MIN", 64)  # the bias closes early: every stream after it moves
    for name in ("exceptions_dense", "frozen_normal", "bank_and_zeros", "dctps_epl"):
        ck = torch.load(VECTORS / f"{name}.pt", weights_only=True)
        ck["state_dict"]["extra.buffer"] = torch.arange(5000, dtype=torch.float32)
        data = pack(ck, values).data
        pack_file(ck, tmp_path / f"{name}.fzp", values)
        assert (tmp_path / f"{name}.fzp").read_bytes() == data
        back = fzpack.restore(data)
        if values == "lossless":
            assert tree_differences(ck, back) == []
        else:
            assert tree_differences(ck["state_dict"]["extra.buffer"], back["state_dict"]["extra.buffer"]) == []
            for n, t in ck["fzpack"]["tensors"].items():  # lossy: only trained values (and DCT offsets) move
                assert tree_differences({"init": t["init"], "mask": t["mask"]},
                                        {"init": back["fzpack"]["tensors"][n]["init"], "mask": back["fzpack"]["tensors"][n]["mask"]}) == []


def test_vectors_keep_their_bytes_through_pack_file(tmp_path):
    for pt in ("generic", "frozen_normal", "mask_factor_context", "lc_recycled"):
        ck = torch.load(VECTORS / f"{pt}.pt", weights_only=True)
        pack_file(ck, tmp_path / "v.fzp")
        assert (tmp_path / "v.fzp").read_bytes() == (VECTORS / f"{pt}.fzp").read_bytes(), pt


def test_pack_file_records_minor_2_for_a_gaps_mask(tmp_path):
    """The minor version counts the mask payloads pack_file writes (mask model 4 is a 1.2 feature)."""
    ck = torch.load(VECTORS / "corpus" / "mask_gaps.pt", weights_only=True)
    pack_file(ck, tmp_path / "g.fzp")
    data = (tmp_path / "g.fzp").read_bytes()
    assert data[9] == 2 and data == (VECTORS / "corpus" / "mask_gaps.fzp").read_bytes()


def test_compress_maps_the_checkpoint_and_writes_what_pack_writes(tmp_path):
    ck = _mixed()
    torch.save(ck, tmp_path / "m.pt")
    report = fzpack.compress(tmp_path / "m.pt")
    data = (tmp_path / "m.fzp").read_bytes()
    assert report.output_bytes == len(data) == pack(torch.load(tmp_path / "m.pt", weights_only=True)).data.__len__()
    assert tree_differences(torch.load(tmp_path / "m.pt", weights_only=True), fzpack.restore(data)) == []


def test_released_pages_of_a_mapped_checkpoint_read_back_the_same(tmp_path):
    ck = {"a": torch.randn(512, 1024), "b": torch.arange(100_000, dtype=torch.int16)}
    torch.save(ck, tmp_path / "m.pt")
    obj, mapped = load_mapped(tmp_path / "m.pt")
    assert mapped
    before = {k: v.clone() for k, v in obj.items()}
    for v in obj.values():
        release_pages(v)
    assert tree_differences(before, obj) == []


def test_a_byte_swapped_checkpoint_is_not_mapped(tmp_path):
    import zipfile

    torch.save({"a": torch.arange(6, dtype=torch.int32)}, tmp_path / "m.pt")
    with zipfile.ZipFile(tmp_path / "m.pt") as src, zipfile.ZipFile(tmp_path / "big.pt", "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith("/byteorder"):
                body = b"big"
            dst.writestr(info, body)
    obj, mapped = load_mapped(tmp_path / "big.pt")
    assert not mapped
    assert torch.equal(obj["a"], torch.load(tmp_path / "big.pt", weights_only=True)["a"])


def test_unreadable_and_legacy_files_fall_back_to_the_normal_load(tmp_path):
    torch.save({"a": torch.ones(3)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    obj, mapped = load_mapped(tmp_path / "legacy.pt")
    assert not mapped and torch.equal(obj["a"], torch.ones(3))
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(CheckpointError):
        load_mapped(tmp_path / "bad.pt")


def test_a_failure_after_early_streams_leaves_no_output_and_no_spool(tmp_path, monkeypatch):
    monkeypatch.setattr(pack_module, "OWN_STREAM_MIN", 1024)
    ck = {"big": torch.randn(10_000), "bad": torch.randn(4, 4).to_sparse()}
    with pytest.raises(CheckpointError):
        pack_file(ck, tmp_path / "m.fzp")
    assert os.listdir(tmp_path) == []


def test_the_spool_copies_through_user_space_without_copy_file_range(tmp_path, monkeypatch):
    ck = _mixed()

    def refuse(*args, **kwargs):
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    pack_file(ck, tmp_path / "m.fzp")
    assert (tmp_path / "m.fzp").read_bytes() == pack(ck).data


_PEAK = """
import sys
import torch
from fzpack.compress import compress


def rss(key):
    return int([l for l in open("/proc/self/status") if l.startswith(key)][0].split()[1]) << 10


compress(sys.argv[2], sys.argv[2] + ".fzp")  # imports, thread pools, allocator arenas: the baseline
base = rss("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS
compress(sys.argv[1], sys.argv[1] + ".fzp")
print(rss("VmHWM") - base)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's resettable VmHWM")
def test_compress_of_a_path_holds_well_under_the_checkpoint(tmp_path):
    """Peak RSS above the warmed-up process stays well below the checkpoint's size (mapped, tensor by tensor)."""
    import subprocess
    import sys

    g = torch.Generator().manual_seed(0)
    ck = {f"l{i}.weight": (torch.randn(1024, 4096, generator=g) * 0.02).to(torch.bfloat16) for i in range(8)}
    ck.update({f"l{i}.bias": torch.zeros(1024, dtype=torch.bfloat16) for i in range(8)})
    torch.save(ck, tmp_path / "big.pt")
    torch.save({"w": torch.randn(1000)}, tmp_path / "tiny.pt")
    size = (tmp_path / "big.pt").stat().st_size  # 64 MiB
    del ck
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(VECTORS.parent.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path / "big.pt"), str(tmp_path / "tiny.pt")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    peak = int(run.stdout.split()[-1])
    # Issue 10 asks for <= 1.5x. Measured: 29 MiB here streaming, 85 MiB (1.3x) loading the file whole
    # first; 0.75x keeps a margin above the one and fails the other.
    assert peak <= 0.75 * size, f"peak {peak >> 20} MiB above baseline for a {size >> 20} MiB checkpoint"
    assert tree_differences(torch.load(tmp_path / "big.pt", weights_only=True), fzpack.restore(tmp_path / "big.pt.fzp")) == []

"""Hostile and broken input: always one FormatError/CheckpointError, never a crash or a bomb."""

from __future__ import annotations

import io
import os
import struct

import hypothesis.strategies as st
import pytest
import torch
import zstandard
from hypothesis import given, settings

import fzpack
from fzpack.container.file import write_container
from fzpack.container.layout import FROZEN, PLAIN, ROLE_VALUES, Header, InitEntry, StreamEntry, TensorEntry
from fzpack.errors import CheckpointError, FormatError
from fzpack.pack import pack
from fzpack.unpack import unpack
from conftest import rebuild_container


@pytest.fixture(scope="module")
def good(frozen_ckpt) -> bytes:
    return pack(frozen_ckpt).data


def test_truncation_anywhere_is_detected(good):
    for n in list(range(0, 64)) + list(range(64, len(good), 97)) + [len(good) - 1]:
        with pytest.raises(FormatError):
            unpack(good[:n])


def test_trailing_garbage_is_detected(good):
    with pytest.raises(FormatError, match="truncated or padded"):
        unpack(good + b"\x00")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_bit_flip_is_detected(good, data):
    pos = data.draw(st.integers(0, len(good) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(good)
    bad[pos] ^= 1 << bit
    with pytest.raises(FormatError):
        unpack(bytes(bad))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_rejected(blob):
    with pytest.raises(FormatError):
        unpack(blob)
    with pytest.raises(FormatError):
        unpack(b"\x89FZP\r\n\x1a\n\x01\x00\x00\x00" + struct.pack("<II", len(blob), 0) + blob)


def test_newer_version_says_upgrade(good):
    bad = good[:9] + b"\x07" + good[10:]
    with pytest.raises(FormatError, match="upgrade fzpack"):
        unpack(bad)
    with pytest.raises(FormatError, match="unsupported format version"):
        unpack(good[:8] + b"\x00" + good[9:])


def test_header_lying_about_stream_length(good):
    def edit(h, stored):
        h.streams[-1].raw_length += 4
    with pytest.raises(FormatError, match="header says"):
        unpack(rebuild_container(good, edit))


def test_header_lying_about_trained_count(good):
    def edit(h, stored):
        t = next(t for t in h.tensors if t.kind == FROZEN)
        t.k = t.numel + 1
    with pytest.raises(FormatError):
        unpack(rebuild_container(good, edit))


def test_zstd_frame_expanding_past_declared_size():
    raw = bytes(1000)
    frame = zstandard.ZstdCompressor().compress(bytes(10_000_000))  # declares 10 MB
    h = Header(streams=[StreamEntry(codec=1, role=ROLE_VALUES, itemsize=1, raw_length=len(raw), stored_length=0, crc32=0)],
               tensors=[TensorEntry(name="x", dtype=torch.uint8, shape=(1000,), kind=PLAIN, stream=0)], tree=b'{"$t":0}')
    with pytest.raises(FormatError, match="declares 10000000 bytes"):
        unpack(write_container(h, [frame]))
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(raw)
    with pytest.raises(FormatError):
        unpack(write_container(h, [no_size]))


def test_tiny_file_describing_huge_frozen_tensor_is_refused():
    t = TensorEntry(name="w", dtype=torch.float32, shape=(1 << 20, 1 << 20), kind=FROZEN, stream=0,
                    init=InitEntry(dist="normal", params=(0.0, 1.0)), k=0, mask_stream=1, mask_length=0)
    h = Header(generator=1, seed=1, schemes=[""],
               streams=[StreamEntry(0, ROLE_VALUES, 4, 0, 0, 0), StreamEntry(0, 1, 1, 0, 0, 0)], tensors=[t], tree=b'{"$t":0}')
    with pytest.raises(FormatError, match="over the limit"):
        unpack(write_container(h, [b"", b""]))


def test_tree_with_duplicate_keys_or_bad_refs(good):
    for tree in (b'{"a":1,"a":2}', b'{"$t":99}', b'{"x":NaN}', b"[" * 100 + b"]" * 100, b'{"$sd":[0,0]}', b"\xff"):
        def edit(h, stored, tree=tree):
            h.tree_codec, h.tree = 0, tree
        with pytest.raises(FormatError):
            unpack(rebuild_container(good, edit))


def test_bool_bytes_must_be_zero_or_one():
    h = Header(streams=[StreamEntry(0, ROLE_VALUES, 1, 2, 0, 0)],
               tensors=[TensorEntry(name="b", dtype=torch.bool, shape=(2,), kind=PLAIN, stream=0)], tree=b'{"$t":0}')
    with pytest.raises(FormatError, match="bool"):
        unpack(write_container(h, [b"\x01\x02"]))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_needing_code_execution_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, p)
    with pytest.raises(CheckpointError, match="refusing to load"):
        fzpack.load_checkpoint(p)


def test_non_checkpoints_are_refused(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        fzpack.load_checkpoint(p)
    with pytest.raises(CheckpointError, match="no such file"):
        fzpack.load_checkpoint(tmp_path / "missing.pt")
    buf = io.BytesIO()
    torch.save({"t": torch.zeros(3)}, buf)
    p.write_bytes(buf.getvalue()[:-40])
    with pytest.raises(CheckpointError):
        fzpack.load_checkpoint(p)

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
from fzpack.container.layout import FROZEN, PLAIN, ROLE_MASKS, ROLE_VALUES, Header, InitEntry, StreamEntry, TensorEntry
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
        fzpack.checkpoint.load_checkpoint(p)


def test_non_checkpoints_are_refused(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        fzpack.checkpoint.load_checkpoint(p)
    with pytest.raises(CheckpointError, match="no such file"):
        fzpack.checkpoint.load_checkpoint(tmp_path / "missing.pt")
    buf = io.BytesIO()
    torch.save({"t": torch.zeros(3)}, buf)
    p.write_bytes(buf.getvalue()[:-40])
    with pytest.raises(CheckpointError):
        fzpack.checkpoint.load_checkpoint(p)


def _plain_header(shape, raw_length=0, codec=0):
    return Header(streams=[StreamEntry(codec, ROLE_VALUES, 4, raw_length, 0, 0)],
                  tensors=[TensorEntry(name="w", dtype=torch.float32, shape=shape, kind=PLAIN, stream=0)], tree=b'{"$t":0}')


@pytest.mark.parametrize("shape", [(1 << 32, 1 << 32, 16), (1 << 40, 1 << 40), (1 << 48, 2), (1 << 16,) * 4])
def test_dims_whose_product_passes_2_48_are_refused_while_parsing(shape):
    # (2^32, 2^32, 16) wraps to 0 in 64-bit arithmetic: a reader without checked multiplication
    # would see a zero-element tensor that passes every size check.
    h = _plain_header(shape)
    with pytest.raises(FormatError, match="more than 2\\*\\*48 elements"):
        unpack(write_container(h, [b""]), max_bytes=1 << 62)


def test_masks_stream_length_beyond_the_file_is_refused_from_the_header():
    t = TensorEntry(name="w", dtype=torch.float32, shape=(4, 4), kind=FROZEN, stream=0,
                    init=InitEntry(dist="normal", params=(0.0, 1.0)), k=1, mask_stream=1, mask_length=10**15)
    h = Header(generator=1, seed=1, schemes=[""], streams=[StreamEntry(0, ROLE_VALUES, 4, 4, 0, 0),
               StreamEntry(0, ROLE_MASKS, 1, 10**15, 0, 0)], tensors=[t], tree=b'{"$t":0}')
    # the codec's own bound for 16 entries is 34 * 16 + 16384 bytes
    with pytest.raises(FormatError, match="exceeds the codec's limit"):
        unpack(write_container(h, [b"\x00" * 4, b"\x01"]))
    t.mask_length = 100
    h.streams[1].raw_length = 100
    data = write_container(h, [b"\x00" * 4, b"\x01"])  # stored 1 byte, raw 100: a lying masks stream
    with pytest.raises(FormatError, match="stored_length must equal raw_length"):
        unpack(data)


def test_masks_stream_with_a_codec_is_refused(good):
    def edit(h, stored):
        next(s for s in h.streams if s.role == ROLE_MASKS).codec = 1
    with pytest.raises(FormatError, match="codec must be 0"):
        unpack(rebuild_container(good, edit))


def test_memory_budget_is_checked_before_stream_checksums(good):
    bad = bytearray(good)
    bad[-1] ^= 0xFF  # corrupt the last stream: a CRC error if the streams were hashed first
    with pytest.raises(FormatError, match="checksum"):
        unpack(bytes(bad))
    with pytest.raises(FormatError, match="over the limit"):
        unpack(bytes(bad), max_bytes=1000)


def test_budget_counts_decoded_streams_and_banks():
    from fzpack.container.file import restored_bytes

    h = _plain_header((10,), raw_length=40)
    h.banks = [("b", 100)]
    assert restored_bytes(h) == 40 + 40 + 400


@pytest.mark.parametrize("tail", [b"\x00", b"junk", zstandard.ZstdCompressor().compress(b"x" * 40)])
def test_zstd_payload_must_be_exactly_one_frame(tail):
    raw = bytes(range(40))
    frame = zstandard.ZstdCompressor(write_content_size=True).compress(raw)
    h = _plain_header((10,), raw_length=40, codec=1)
    assert unpack(write_container(h, [frame])).obj.numpy().tobytes() == raw
    with pytest.raises(FormatError, match="follow the zstd frame"):
        unpack(write_container(h, [frame + tail]))


def test_zstd_frame_with_a_dictionary_id_is_refused():
    raw = bytes(range(40))
    d = zstandard.train_dictionary(1024, [bytes([i]) * 64 + raw for i in range(200)])
    frame = zstandard.ZstdCompressor(dict_data=d, write_content_size=True).compress(raw)
    assert zstandard.get_frame_parameters(frame).dict_id != 0
    with pytest.raises(FormatError, match="dictionary ID"):
        unpack(write_container(_plain_header((10,), raw_length=40, codec=1), [frame]))


def test_tree_with_bytes_after_its_frame_is_refused(good):
    def edit(h, stored):
        h.tree_codec = 1
        h.tree = zstandard.ZstdCompressor(write_content_size=True).compress(b'{"$t":0}') + b"\x00"
    with pytest.raises(FormatError, match="follow the zstd frame"):
        unpack(rebuild_container(good, edit))

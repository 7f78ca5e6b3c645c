"""Hostile update payloads: foreign, truncated, bit-flipped, lying or bombing ones are one PayloadError each.

``forge`` re-serialises a payload after an edit with a valid header CRC (a lying writer), so each
check is reached on its own instead of stopping at the checksum.
"""

from __future__ import annotations

import dataclasses
import struct

import hypothesis.strategies as st
import pytest
import torch
import zstandard
from hypothesis import given, settings

import fzpack
from fzpack import fl
from fzpack.codecs.values import CAST_FP16, RAW, ZSTD
from fzpack.container.file import crc32
from fzpack.fl.payload import PREAMBLE_SIZE, _parse_header, assemble
from test_fl_payload import _client, _server

PayloadError = fl.PayloadError


@pytest.fixture(scope="module")
def setup():
    base = fl.Base.from_model(_server("freezenet"))
    client = _client(base.to_bytes(), seed=1)
    good = fl.encode_update(client, base, round=4, examples=32)
    delta = fl.encode_update(client, base, round=4, examples=32, delta_from=base.values())
    return base, client, good, delta


def forge(payload: bytes, edit, fix_stream_crc: bool = True) -> bytes:
    """Parse, ``edit(parts)``, serialise again with a valid header CRC (and stream CRCs unless told not to)."""
    hlen = int.from_bytes(payload[12:16], "little")
    delta = bool(payload[10] & 1)
    fp, rnd, ex, prev, streams, entry_stream = _parse_header(payload[PREAMBLE_SIZE : PREAMBLE_SIZE + hlen], delta)
    pos, stored = PREAMBLE_SIZE + hlen, []
    for s in streams:
        stored.append(payload[pos : pos + s.stored_length])
        pos += s.stored_length
    parts = {"fingerprint": fp, "round": rnd, "examples": ex, "previous": prev, "streams": streams,
             "entry_stream": entry_stream, "stored": stored}
    edit(parts)
    if fix_stream_crc:
        for s, b in zip(parts["streams"], parts["stored"]):
            s.crc = crc32(b)
    return assemble(parts["fingerprint"], parts["round"], parts["examples"], parts["previous"], parts["streams"],
                    parts["entry_stream"], parts["stored"])


def test_forge_without_edit_is_identity(setup):
    base, client, good, delta = setup
    assert forge(good, lambda p: None) == good and forge(delta, lambda p: None) == delta


def test_payload_for_another_base_is_refused(setup):
    base, client, good, delta = setup
    for other in (fl.Base.from_model(_server("random-mask")), fl.Base.from_model(_server("freezenet"), arch={"name": "x"})):
        with pytest.raises(PayloadError, match="for another base"):
            fl.decode_update(good, other)
    with pytest.raises(PayloadError, match=r"\.fzp file"):
        fl.decode_update(base.to_bytes(), base)


def test_truncation_at_every_length_and_padding(setup):
    base, client, good, delta = setup
    for blob in (good, delta):
        for n in range(len(blob)):
            with pytest.raises(PayloadError):
                fl.decode_update(blob[:n], base)
        with pytest.raises(PayloadError, match="truncated or padded"):
            fl.decode_update(blob + b"\x00", base)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_bit_flip_is_refused(setup, data):
    base, client, good, delta = setup
    blob = data.draw(st.sampled_from([good, delta]))
    pos = data.draw(st.integers(0, len(blob) - 1))
    bad = bytearray(blob)
    bad[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(PayloadError):
        fl.decode_update(bytes(bad), base)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused(setup, blob):
    base = setup[0]
    with pytest.raises(PayloadError):
        fl.decode_update(blob, base)
    body = base.fingerprint + blob
    pre = fl.payload.MAGIC + struct.pack("<BBHI", 1, 0, 0, len(body))
    with pytest.raises(PayloadError):  # a valid CRC over garbage
        fl.decode_update(pre + struct.pack("<I", crc32(pre + body)) + body, base)


def _lie(field: str, value):
    def edit(p):
        setattr(p["streams"][0], field, value)
    return edit


LIES = {
    "one entry too few": (lambda p: p["entry_stream"].pop(), "entries, the base's layout"),
    "one entry too many": (lambda p: p["entry_stream"].append(0), "entries, the base's layout"),
    "raw length": (lambda p: _lie("raw_length", p["streams"][0].raw_length + 4)(p), "declares"),
    "huge raw length": (lambda p: _lie("raw_length", 1 << 60)(p), "declares"),
    "stored length": (lambda p: _lie("stored_length", p["streams"][0].stored_length + 1)(p), "truncated or padded"),
    "stream dtype": (lambda p: _lie("dtype", torch.int32)(p), "is read from a"),
    "stream index": (lambda p: p["entry_stream"].__setitem__(0, 5), "stream index"),
    "unused stream": (lambda p: (p["streams"].append(dataclasses.replace(p["streams"][0], raw_length=0, stored_length=0)),
                                 p["stored"].append(b"")), "used by no entry"),
    "raw codec": (lambda p: _lie("codec", RAW)(p), "raw stream"),
    "lossy codec on integers": (lambda p: setattr(p["streams"][-1], "codec", CAST_FP16), "cannot code"),
    "unknown codec": (lambda p: _lie("codec", 99)(p), "unknown stream codec"),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_lying_sizes_and_fields_are_refused_before_decoding(setup, lie):
    base, client, good, delta = setup
    edit, message = LIES[lie]
    with pytest.raises(PayloadError, match=message):
        fl.decode_update(forge(good, edit), base)


def test_stream_checksum_and_corrupt_codec_payloads(setup):
    base, client, good, delta = setup
    def flip(p):
        p["stored"][0] = bytes([p["stored"][0][0] ^ 1]) + p["stored"][0][1:]
    with pytest.raises(PayloadError, match="checksum"):
        fl.decode_update(forge(good, flip, fix_stream_crc=False), base)
    with pytest.raises(PayloadError, match="stream 0"):  # valid CRC over a broken zstd frame
        fl.decode_update(forge(good, flip), base)


def test_zstd_bomb_is_refused_before_decompression(setup):
    base, client, good, delta = setup
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(64 << 20))  # ~2 KB declaring 64 MiB
    def edit(p):
        p["streams"][0].codec, p["stored"][0] = ZSTD, bomb
        p["streams"][0].stored_length = len(bomb)
    with pytest.raises(PayloadError, match="declares 67108864 bytes"):
        fl.decode_update(forge(good, edit), base)
    def edit_both(p):  # and a header that claims the bomb's size is refused by the layout, before any stream
        edit(p)
        p["streams"][0].raw_length = 64 << 20
    with pytest.raises(PayloadError, match="its entries take"):
        fl.decode_update(forge(good, edit_both), base)


def test_memory_budget(setup):
    base, client, good, delta = setup
    with pytest.raises(PayloadError, match="over the limit"):
        fl.decode_update(good, base, max_bytes=100)


def test_version_flags_and_delta_digest(setup):
    base, client, good, delta = setup
    newer = bytearray(good)
    newer[9] = 1
    with pytest.raises(PayloadError, match="upgrade fzpack"):
        fl.decode_update(bytes(newer), base)
    flags = bytearray(good)
    flags[10] |= 2
    with pytest.raises(PayloadError, match="unknown payload flags"):
        fl.decode_update(bytes(flags), base)
    wrong = forge(delta, lambda p: p.__setitem__("previous", bytes(32)))
    with pytest.raises(PayloadError, match="other previous values"):
        fl.decode_update(wrong, base)
    with pytest.raises(fzpack.FzpackError, match="values given"):
        fl.decode_update(delta, base, previous=base.values()[:-1])


def test_encoder_refuses_what_does_not_fit(setup):
    base, client, good, delta = setup
    vals = base.values()
    with pytest.raises(fzpack.FzpackError, match="should be"):
        fl.encode_update([v.double() for v in vals], base)
    with pytest.raises(fzpack.FzpackError, match="frozen weights"):
        fl.encode_update(_server("dense"), base)
    with pytest.raises(fzpack.FzpackError, match="not the base's mask"):
        fl.encode_update(_server("dctps"), base)
    with pytest.raises(fzpack.FzpackError, match="round"):
        fl.encode_update(vals, base, round=-1)
    big = [v.clone() for v in vals]
    big[0][0] = 1e6
    with pytest.raises(fzpack.FzpackError, match="overflows fp16"):
        fl.encode_update(big, base, values="fp16")
    with pytest.raises(fzpack.FzpackError, match="unknown values mode"):
        fl.encode_update(vals, base, values="int4")

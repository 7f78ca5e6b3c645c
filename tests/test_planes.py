"""Stream codec 3, planes (formats/fzpack-v1.md section 3.2.3): bit-exact on every float, hostile payloads refused."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
import zstandard
from hypothesis import given, settings

from fzpack.codecs.planes import CODER_ANS, CODER_RAW, CODER_ZSTD, decode_planes, encode_ans, encode_planes
from fzpack.codecs.values import PLANES, PLANES_MIN, decode_stream, encode_values
from fzpack.container.bytes_io import Reader, append_varint
from fzpack.container.file import write_container
from fzpack.container.layout import PLAIN, ROLE_VALUES, Header, StreamEntry, TensorEntry
from fzpack.equality import tree_differences
from fzpack.errors import CodecError, FormatError
from fzpack.pack import pack
from fzpack.tensor_bits import bits_view
from fzpack.unpack import unpack

FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _special(dtype: torch.dtype, n: int, seed: int = 0) -> torch.Tensor:
    """Gaussian weights with NaNs (two payloads), infinities, -0.0, subnormals, the extremes of the dtype."""
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(n, generator=g, dtype=torch.float64) * 0.05).to(dtype)
    fi = torch.finfo(dtype)
    special = [math.nan, -math.nan, math.inf, -math.inf, -0.0, 0.0, fi.tiny, -fi.tiny, fi.tiny / 4, -fi.tiny / 8,
               fi.max, -fi.max, fi.eps, 1.0, -1.0]
    t[: len(special)] = torch.tensor(special, dtype=torch.float64).to(dtype)
    bits = bits_view(t)
    bits[len(special)] = bits[0] ^ 1  # a NaN with another payload
    return t


def _raw(t: torch.Tensor) -> bytes:
    return bits_view(t.contiguous()).numpy().tobytes()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("slow", [False, True])
def test_round_trip_is_bit_exact_on_special_values(dtype, slow):
    raw = _raw(_special(dtype, 20000))
    payload = encode_planes(raw, torch.empty((), dtype=dtype).element_size(), slow=slow)
    assert bytes(decode_planes(payload, len(raw), torch.empty((), dtype=dtype).element_size())) == raw


@pytest.mark.parametrize("itemsize", [2, 4, 8])
def test_every_rotation_round_trips(itemsize):
    raw = np.random.default_rng(itemsize).integers(0, 256, 64 * itemsize, dtype=np.uint8).tobytes()
    for k in range(8 * itemsize):
        payload = encode_planes(raw, itemsize, rotation=k)
        assert payload[0] == k and bytes(decode_planes(payload, len(raw), itemsize)) == raw


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([2, 4, 8]), st.binary(max_size=2000), st.booleans())
def test_any_bytes_round_trip(itemsize, blob, slow):
    blob = blob[: len(blob) - len(blob) % itemsize]
    payload = encode_planes(blob, itemsize, slow=slow)
    assert bytes(decode_planes(payload, len(blob), itemsize)) == blob


def test_spec_example_bytes():
    """The worked example of section 3.2.3: bfloat16 1.0 and -2.0 with k = 1 and raw planes."""
    raw = _raw(torch.tensor([1.0, -2.0], dtype=torch.bfloat16))
    assert raw == bytes.fromhex("803f00c0")
    payload = bytes.fromhex("01 00 02 00 01 00 02 7f 80")
    assert encode_planes(raw, 2, rotation=1) == payload
    assert bytes(decode_planes(payload, 4, 2)) == raw


def test_each_plane_coder_decodes():
    n = 5000
    rng = np.random.default_rng(3)
    planes = [rng.integers(0, 256, n, dtype=np.uint8), np.minimum(rng.geometric(0.4, n), 255).astype(np.uint8)]
    raw = np.stack(planes, 1).reshape(-1).tobytes()  # items whose low byte is plane 0, high byte plane 1
    for coders in [(CODER_RAW, CODER_ZSTD), (CODER_RAW, CODER_ANS), (CODER_ZSTD, CODER_ANS)]:
        payload = bytearray([0])
        for plane, coder in zip(planes, coders):
            data = {CODER_RAW: plane.tobytes(), CODER_ZSTD: zstandard.ZstdCompressor(write_content_size=True).compress(plane.tobytes()),
                    CODER_ANS: encode_ans(plane, 1)}[coder]
            payload.append(coder)
            append_varint(payload, len(data))
            payload += data
        assert bytes(decode_planes(bytes(payload), len(raw), 2)) == raw


def _payload(k: int, planes: list[tuple[int, bytes]]) -> bytes:
    out = bytearray([k])
    for coder, data in planes:
        out.append(coder)
        append_varint(out, len(data))
        out += data
    return bytes(out)


HOSTILE = {
    "rotation": (_payload(16, [(0, b"ab"), (0, b"cd")]), "rotation 16"),
    "unknown coder": (_payload(0, [(0, b"ab"), (9, b"cd")]), "unknown plane coder"),
    "short raw plane": (_payload(0, [(0, b"a"), (0, b"cd")]), "raw plane 0 holds 1"),
    "length past the end": (bytes([0, 0, 5]) + b"ab", "exceeds its limit"),
    "missing plane": (_payload(0, [(0, b"ab")]), "truncated"),
    "trailing bytes": (_payload(0, [(0, b"ab"), (0, b"cd")]) + b"\x00", "trailing"),
    "zstd declares more": (_payload(0, [(0, b"ab"), (1, zstandard.ZstdCompressor().compress(bytes(10_000_000)))]),
                           "declares 10000000"),
    "zstd without size": (_payload(0, [(0, b"ab"), (1, zstandard.ZstdCompressor(write_content_size=False).compress(b"cd"))]),
                          "declares"),
    "zstd then junk": (_payload(0, [(0, b"ab"), (1, zstandard.ZstdCompressor().compress(b"cd") + b"x")]), "follow the zstd frame"),
    "ans counts": (_payload(0, [(0, b"ab"), (2, bytes([7, 1, 0]))]), "add up to 1"),
    "ans shift": (_payload(0, [(0, b"ab"), (2, bytes([8]) + bytes(1))]), "bucket shift"),
    "ans garbage": (_payload(0, [(0, b"ab"), (2, encode_ans(np.array([3, 200], np.uint8), 0)[:-2] + b"\x01\x02")]), "ANS"),
    "ans histogram": (_payload(0, [(0, b"ab"), (2, bytes([0]) + b"\x02" + b"\x00" * 255 + encode_ans(np.array([0, 1], np.uint8), 0)[258:])]),
                      "histogram|ANS"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_payloads_are_refused(name):
    payload, match = HOSTILE[name]
    with pytest.raises(CodecError, match=match):
        decode_planes(payload, 4, 2)


@pytest.mark.parametrize("itemsize, raw_length", [(1, 4), (3, 6), (16, 32), (2, 5)])
def test_bad_item_sizes_are_refused(itemsize, raw_length):
    with pytest.raises(CodecError):
        decode_stream(PLANES, bytes(20), raw_length, itemsize)


def test_empty_ans_plane_is_refused():
    with pytest.raises(CodecError, match="at least one item"):
        decode_planes(_payload(0, [(2, bytes([0]) + bytes(256)), (2, bytes([0]) + bytes(256))]), 0, 2)


def test_floating_streams_of_16_kib_use_planes_and_make_a_1_2_file():
    small = {"w": torch.randn(PLANES_MIN // 4 - 1)}  # one element short: codecs 0-2, a 1.0 file
    res = pack(small)
    assert res.data[9] == 0 and {s.codec for s in res.header.streams} <= {0, 1, 2}
    big = {"w": torch.randn(64, 64), "h": torch.randn(8192).half(), "i": torch.arange(8192)}
    res = pack(big)
    assert res.data[9] == 2
    assert {s.itemsize: s.codec for s in res.header.streams} == {4: PLANES, 2: PLANES, 8: 2}  # int64: bytegroup
    assert tree_differences(big, unpack(res.data).obj) == []


@pytest.mark.parametrize("dtype", FLOATS)
def test_file_round_trip_on_special_values(dtype):
    sd = {"w": _special(dtype, 30000).reshape(100, 300), "b": _special(dtype, 300, seed=1)}
    res = pack(sd)
    assert any(s.codec == PLANES for s in res.header.streams)
    assert tree_differences(sd, unpack(res.data).obj) == []


def test_planes_beat_bytegroup_zstd_on_weights():
    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(0)) * 0.02
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        raw = _raw(w.to(dtype))
        size = w.element_size() if dtype == torch.float32 else 2
        codec, payload = encode_values(raw, size, True)
        grouped = zstandard.ZstdCompressor(level=19).compress(np.frombuffer(raw, np.uint8).reshape(-1, size).T.tobytes())
        assert codec == PLANES and len(payload) < len(grouped), dtype


def test_declared_minor_must_match_the_planes_codec():
    data = pack({"w": torch.randn(64, 64)}).data
    assert data[9] == 2
    with pytest.raises(FormatError, match="uses 1.2 features"):
        unpack(data[:9] + b"\x01" + data[10:])
    with pytest.raises(FormatError, match="uses 1.2 features"):
        unpack(data[:9] + b"\x00" + data[10:])
    assert data[:9] + b"\x03" + data[10:] != data
    with pytest.raises(FormatError, match="upgrade fzpack"):
        unpack(data[:9] + b"\x03" + data[10:])


def test_planes_stream_in_a_container_is_checked_like_any_codec():
    payload = _payload(0, [(0, b"ab"), (0, b"c")])  # plane 1 one byte short
    h = Header(streams=[StreamEntry(PLANES, ROLE_VALUES, 2, 4, 0, 0)],
               tensors=[TensorEntry(name="x", dtype=torch.float16, shape=(2,), kind=PLAIN, stream=0)], tree=b'{"$t":0}')
    with pytest.raises(FormatError, match="stream 0: planes: raw plane 1"):
        unpack(write_container(h, [payload]))
    h.streams[0].itemsize = 1
    h.tensors[0].dtype = torch.uint8
    h.tensors[0].shape = (4,)
    with pytest.raises(FormatError, match="itemsize 1"):
        unpack(write_container(h, [_payload(0, [(0, b"abcd")])]))


def test_update_payloads_refuse_the_planes_codec():
    """fl-update-v1.md lists codecs 0, 1, 2, 16-18: a container codec of 1.2 is not one of them."""
    from fzpack.fl.payload import STREAM_CODECS

    assert PLANES not in STREAM_CODECS


def test_reader_helper_for_plane_lists():
    payload = encode_planes(_raw(torch.randn(4096)), 4, slow=True)
    r = Reader(payload[1:])
    coders = []
    while r.remaining:
        coders.append(r.u8())
        r.raw(r.varint())
    assert len(coders) == 4 and set(coders) <= {CODER_RAW, CODER_ZSTD, CODER_ANS}


@pytest.mark.parametrize("itemsize", [2, 4])
def test_two_thread_decoding_equals_sequential(itemsize, monkeypatch):
    """Planes of >= PARALLEL_PLANE_BYTES items are coded and decoded on two threads: the same payload,
    the same decoded bytes, and a broken plane gives the sequential loop's error (the first in order)."""
    import fzpack.codecs.planes as P

    n = (1 << 20) + 12_345  # items: over the threshold, and not a whole number of chunks
    values = torch.randn(n, generator=torch.Generator().manual_seed(itemsize)) * 0.02
    data = _raw(values if itemsize == 4 else values.to(torch.bfloat16))  # bfloat16: both planes are zstd
    stored = encode_planes(data, itemsize)
    frames = [(coder, body) for coder, body in _planes_of(stored, itemsize)]
    assert sum(c == CODER_ZSTD for c, _ in frames) >= 2, "the case must take the two-thread path"
    broken = _payload(stored[0], [(c, b[:-1] if j >= 1 and c == CODER_ZSTD else b) for j, (c, b) in enumerate(frames)])
    outcomes = []
    for threshold in (1, 1 << 62):
        monkeypatch.setattr(P, "PARALLEL_PLANE_BYTES", threshold)
        with pytest.raises(CodecError) as err:
            decode_planes(broken, len(data), itemsize)
        outcomes.append((decode_planes(stored, len(data), itemsize).tobytes(), str(err.value), encode_planes(data, itemsize)))
    assert outcomes[0] == outcomes[1] and outcomes[0][0] == data


def _planes_of(stored: bytes, itemsize: int) -> list[tuple[int, bytes]]:
    r = Reader(stored, "test")
    r.u8()
    out = []
    for j in range(itemsize):
        coder = r.u8()
        out.append((coder, bytes(r.raw_view(r.varint(limit=r.remaining, what="len")))))
    return out


def test_forked_child_decodes_with_its_own_pool():
    """The two-thread plane pool is per process: a child forked after the parent used it still
    decodes (the parent's worker threads do not exist in the child)."""
    import multiprocessing as mp

    import fzpack.codecs.planes as P

    n = P.PARALLEL_PLANE_BYTES + 4096
    data = _raw((torch.randn(n, generator=torch.Generator().manual_seed(5)) * 0.02).to(torch.bfloat16))
    stored = encode_planes(data, 2)
    assert decode_planes(stored, len(data), 2).tobytes() == data  # the parent's pool exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        back = pool.apply_async(_decode_in_child, (stored, len(data))).get(timeout=60)
    assert back == data


def _decode_in_child(stored: bytes, length: int) -> bytes:
    return decode_planes(stored, length, 2).tobytes()

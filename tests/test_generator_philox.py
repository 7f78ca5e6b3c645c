"""Philox4x64-10 backends and stream keys of generator v1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fzpack.errors import FzpackError
from fzpack.generator import BANK, INIT, MASK, philox4x64, stream_key
from fzpack.generator import reference as ref
from fzpack.generator.torch_philox import as_int64, philox_rounds

VECTORS = json.loads((Path(__file__).parents[1] / "formats/vectors/generator.json").read_text(encoding="utf-8"))
KAT = [
    (tuple(int(c, 16) for c in v["counter"]), tuple(int(k, 16) for k in v["key"]), [int(o, 16) for o in v["out"]])
    for v in VECTORS["philox4x64_10_kat"]
]
U64 = st.integers(0, 2**64 - 1)


def test_kat_vectors_are_random123s() -> None:
    # the file's first vector is the one quoted from Random123's kat_vectors in the brief
    assert [hex(x) for x in KAT[0][2]] == [
        "0x16554d9eca36314c", "0xdb20fe9d672d0fdc", "0xd7e772cee186176b", "0x7e68b68aec7ba23b",
    ]
    assert len(KAT) == 3


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_kat_reference(counter, key, expected) -> None:
    assert list(ref.philox_block(key, counter)) == expected


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_kat_numpy(counter, key, expected) -> None:
    # numpy increments before each block: counter - 1 makes the first output block `counter`
    c = (sum(w << (64 * i) for i, w in enumerate(counter)) - 1) % 2**256
    words = np.array([(c >> (64 * i)) & (2**64 - 1) for i in range(4)], dtype=np.uint64)
    gen = np.random.Philox(key=np.array(key, dtype=np.uint64), counter=words)
    assert [int(x) for x in gen.random_raw(4)] == expected


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_kat_torch(counter, key, expected) -> None:
    ctr = tuple(torch.tensor([as_int64(c)], dtype=torch.int64) for c in counter)
    out = philox_rounds(key, ctr)  # type: ignore[arg-type]
    assert [int(t.item()) & (2**64 - 1) for t in out] == expected


def test_block_zero_is_kat_zero() -> None:
    assert [int(x) for x in philox4x64((0, 0), 0, 1)[0]] == KAT[0][2]
    t = philox4x64((0, 0), 0, 1, backend="torch")
    assert [int(x) & (2**64 - 1) for x in t[0]] == KAT[0][2]


@settings(max_examples=40, deadline=None)
@given(k0=U64, k1=U64, start=st.integers(0, 2**40), n=st.integers(0, 40))
def test_numpy_torch_reference_agree(k0: int, k1: int, start: int, n: int) -> None:
    a = philox4x64((k0, k1), start, n)
    b = philox4x64((k0, k1), start, n, backend="torch")
    assert a.shape == (n, 4) and a.dtype == np.uint64
    assert b.shape == (n, 4) and b.dtype == torch.int64
    assert np.array_equal(a.view(np.int64), b.numpy())
    if n:
        assert [int(x) for x in a[0]] == list(ref.philox_block((k0, k1), (start, 0, 0, 0)))


def test_blocks_are_position_independent() -> None:
    key = (123, 456)
    full = philox4x64(key, 0, 300)
    for start, n in [(0, 1), (1, 5), (7, 100), (299, 1), (150, 150)]:
        assert np.array_equal(philox4x64(key, start, n), full[start : start + n])


def test_counter_word0_is_64_bits() -> None:
    key = (1, 2)
    big = 2**40 + 17
    assert [int(x) for x in philox4x64(key, big, 1)[0]] == list(ref.philox_block(key, (big, 0, 0, 0)))


def test_stream_key_layout() -> None:
    k0, k1 = stream_key(0xDEADBEEF, INIT, "fc.weight")
    assert k0 == 0xDEADBEEF | (1 << 32)
    assert k1 == int.from_bytes(hashlib.sha256(b"fc.weight").digest()[:8], "little")
    assert stream_key(5, MASK, "a")[0] == 5 | (2 << 32)
    assert stream_key(5, BANK, "a")[0] == 5 | (3 << 32)
    assert stream_key(0, INIT, "\u5c42")[1] == int.from_bytes(hashlib.sha256("\u5c42".encode()).digest()[:8], "little")


def test_stream_keys_match_vectors() -> None:
    purposes = {"INIT": INIT, "MASK": MASK, "BANK": BANK}
    for case in VECTORS["streams"]:
        key = stream_key(case["seed"], purposes[case["purpose"]], case["name"])
        assert [f"{k:016x}" for k in key] == case["key"]
        raw = philox4x64(key, 0, 2).reshape(-1)
        assert [f"{int(x):016x}" for x in raw] == case["r"]


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "3", None, True])
def test_bad_seed(seed) -> None:
    with pytest.raises(FzpackError):
        stream_key(seed, INIT, "w")


def test_seed_accepts_numpy_ints() -> None:
    assert stream_key(np.uint32(7), INIT, "w") == stream_key(7, INIT, "w")


@pytest.mark.parametrize("purpose", [0, 4, "INIT", 1.0, True])
def test_bad_purpose(purpose) -> None:
    with pytest.raises(FzpackError):
        stream_key(0, purpose, "w")


def test_bad_name_and_ranges() -> None:
    with pytest.raises(FzpackError):
        stream_key(0, INIT, b"w")  # type: ignore[arg-type]
    with pytest.raises(FzpackError):
        stream_key(0, INIT, "\ud800")  # lone surrogate: not encodable as UTF-8
    with pytest.raises(FzpackError):
        philox4x64((0, 2**64), 0, 1)
    with pytest.raises(FzpackError):
        philox4x64((0, 0), -1, 1)
    with pytest.raises(FzpackError):
        philox4x64((0, 0), 0, 1, backend="cupy")

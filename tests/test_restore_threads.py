"""Per-tensor restore threads (fzpack.unpack): same bits, same errors, whatever the thread count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fzpack
import fzpack.unpack as unpack_mod
from fzpack.equality import tree_differences
from fzpack.errors import FormatError, FzpackError
from fzpack.generator import generate, random_mask
from fzpack.pack import pack
from fzpack.tensor_bits import bits_view
from fzpack.unpack import get_restore_threads, set_restore_threads, unpack
from conftest import rebuild_container


def multi_tensor_checkpoint(seed: int = 4) -> dict:
    """Frozen tensors of every flavour (exceptions, dense, seed mask, scaled, float16) plus plain and tied ones."""
    rng = np.random.default_rng(seed)
    sd, tensors = {}, {}
    kinds = ["frozen", "exceptions", "plain", "dense", "seed_mask", "scaled", "float16", "exceptions"]
    for j, kind in enumerate(kinds):
        name, shape = f"l{j}.weight", (int(rng.integers(5, 40)), int(rng.integers(5, 40)))
        if kind == "plain":
            sd[name] = torch.from_numpy(rng.normal(size=shape).astype(np.float32))
            continue
        spec = [fzpack.generator.InitSpec("normal", 0.0, 0.2), fzpack.generator.InitSpec("uniform", -0.3, 0.3)][j % 2]
        dtype = torch.float16 if kind == "float16" else torch.float32
        w = generate(spec, seed, name, shape, dtype=dtype)
        if kind == "seed_mask":
            mask = random_mask(seed, name, shape, 7)
        else:
            mask = torch.from_numpy(rng.random(shape) < 0.1)
        init = {**spec.to_dict(), "scheme": spec.dist}
        if kind == "scaled":
            init["scale"] = float(np.float32(0.875))
            w = w * init["scale"]
        w[mask] = torch.from_numpy(rng.normal(size=int(mask.sum())).astype(np.float32)).to(dtype)
        if kind == "exceptions":
            flat, frozen = w.view(-1), torch.nonzero(~mask.reshape(-1))[:, 0]
            flat[frozen[:3]] = torch.tensor([1.5, -0.0, 3.0])
        if kind == "dense":
            w = w * 0.5
        sd[name] = w
        tensors[name] = {"init": init, "mask": mask}
    sd["tied.weight"] = sd["l0.weight"]
    return {"state_dict": sd, "fzpack": {"convention": 1, "seed": seed, "tensors": tensors}}


@pytest.fixture(scope="module")
def data() -> bytes:
    return pack(multi_tensor_checkpoint()).data


@pytest.fixture
def threads(monkeypatch):
    """Run with n restore threads, on small files too; restores the setting afterwards."""
    monkeypatch.setattr(unpack_mod, "PARALLEL_MIN_ELEMENTS", 0)
    before = get_restore_threads()

    def use(n: int) -> None:
        set_restore_threads(n)

    yield use
    set_restore_threads(before)


def outcome(data: bytes):
    calls = []
    try:
        u = unpack(data, progress=calls.append)
    except Exception as e:  # noqa: BLE001 - the error itself is the outcome
        return ("error", type(e).__name__, str(e), len(calls))
    return ("ok", [bits_view(t.contiguous()).numpy().tobytes() for t in u.tensors],
            {i: m.numpy().tobytes() for i, m in u.masks.items()}, len(calls))


def test_results_identical_for_1_and_2_threads(data, threads):
    results = []
    for n in (1, 2, 3):
        threads(n)
        results.append(outcome(data))
    assert results[0][0] == "ok" and results[0][3] == len(unpack(data).tensors)
    assert results[1] == results[0] and results[2] == results[0]
    threads(2)
    back = unpack(data).obj
    assert tree_differences(multi_tensor_checkpoint(), back) == []


def test_errors_identical_for_1_and_2_threads(data, threads):
    rng = np.random.default_rng(0)
    seen_errors = 0
    for trial in range(40):
        def flip(h, stored):
            i = int(rng.integers(len(stored)))
            if stored[i]:
                s = bytearray(stored[i])
                s[int(rng.integers(len(s)))] ^= 1 << int(rng.integers(8))
                stored[i] = bytes(s)
        bad = rebuild_container(data, flip)
        threads(1)
        one = outcome(bad)
        threads(2)
        assert outcome(bad) == one, trial
        seen_errors += one[0] == "error"
    assert seen_errors > 5


def _masks_and_index(data: bytes):
    from fzpack.container.file import read_container
    from fzpack.container.layout import ROLE_INDEX, ROLE_MASKS

    h, _ = read_container(data)
    roles = [s.role for s in h.streams]
    return h, roles.index(ROLE_MASKS), roles.index(ROLE_INDEX)


def test_first_failing_tensor_in_table_order_wins(data, threads):
    """A broken mask in an early tensor beats broken exception bytes of a later one (checked later in the walk)."""
    h, masks, index = _masks_and_index(data)
    first = next(t for t in h.tensors if t.kind == 1 and t.mask_length)

    def break_both(h, stored):
        s = bytearray(stored[masks])
        s[first.mask_length // 2] ^= 0x10
        stored[masks] = bytes(s)
        s = bytearray(stored[index])
        s[-1] |= 0x80  # the last varint never ends
        stored[index] = bytes(s)

    def break_index(h, stored):
        s = bytearray(stored[index])
        s[-1] |= 0x80
        stored[index] = bytes(s)

    for n in (1, 2):
        threads(n)
        with pytest.raises(FormatError, match=f"tensor {first.name!r}: mask"):
            unpack(rebuild_container(data, break_both))
        calls = []
        with pytest.raises(FormatError, match="index stream"):
            unpack(rebuild_container(data, break_index), progress=calls.append)
        last = max(i for i, t in enumerate(h.tensors) if t.n_exceptions)
        assert len(calls) == last  # every tensor before the broken one was built


def test_restore_thread_setting():
    before = get_restore_threads()
    try:
        set_restore_threads(3)
        assert get_restore_threads() == 3
        for bad in (0, -1, True, 1.5, "2"):
            with pytest.raises(FzpackError):
                set_restore_threads(bad)
        assert get_restore_threads() == 3
    finally:
        set_restore_threads(before)


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), ("0", 1), ("junk", 1), ("1000", 64)])
def test_restore_threads_from_environment(monkeypatch, value, expected):
    monkeypatch.setenv("FZPACK_RESTORE_THREADS", value)
    assert unpack_mod._default_restore_threads() == expected


def test_default_restore_threads_without_environment(monkeypatch):
    monkeypatch.delenv("FZPACK_RESTORE_THREADS", raising=False)
    assert 1 <= unpack_mod._default_restore_threads() <= 4

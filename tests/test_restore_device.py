"""Restoring onto a GPU: the device code path (masks decoded against the context where it lives,
positions as device tensors, no dense host copy, no compiled CPU kernel) gives the CPU's bits.

Without CUDA the same code path runs on CPU tensors (unpack._DEVICE_PATH_ON_CPU), so it is tested
on every machine; the CUDA tests compare a real GPU restore with the CPU reference where one exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fzpack
import fzpack.unpack as U
from fzpack.codecs.mask import decode_mask_positions, encode_mask
from fzpack.codecs.mask_device import decode_mask_device
from fzpack.equality import tree_differences
from fzpack.errors import CodecError
from fzpack.generator import compiled

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_mask_codec import random_factor_payloads, structured_mask  # noqa: E402
from test_roundtrip import _to_cpu  # noqa: E402

VECTORS = Path(__file__).resolve().parent.parent / "formats" / "vectors"
FILES = sorted(VECTORS.glob("*.fzp")) + sorted((VECTORS / "corpus").glob("*.fzp")) + sorted((VECTORS / "legacy").glob("*.fzp"))
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_device_code_path_on_cpu_tensors_gives_the_same_checkpoint(path, monkeypatch):
    data = path.read_bytes()
    want = fzpack.restore(data)
    monkeypatch.setattr(U, "_DEVICE_PATH_ON_CPU", True)
    assert tree_differences(want, fzpack.restore(data)) == []


@pytest.mark.parametrize("kernel", ["compiled", "numpy"])
def test_device_mask_decoder_equals_the_host_decoder(kernel, monkeypatch):
    if kernel == "compiled" and compiled.unavailable_reason():
        pytest.skip("numba not installed")
    monkeypatch.setenv("FZPACK_KERNEL", kernel)
    shapes = [(50, 40), (6, 7, 5, 5), (300,), (64, 16, 3, 3), (2, 700)]
    done = 0
    for payload, shape, k, ctx, flat in random_factor_payloads(np.random.default_rng(8), shapes, 5):
        for count in (k, k - 1, k + 1):
            if not 0 < count < flat.size:
                continue
            try:
                want = decode_mask_positions(payload, shape, count, ctx)
            except CodecError:
                with pytest.raises(CodecError):
                    decode_mask_device(payload, shape, count, torch.from_numpy(ctx))
                continue
            mask, pos = decode_mask_device(payload, shape, count, torch.from_numpy(ctx))
            assert np.array_equal(mask, want[0]) and np.array_equal(pos.numpy(), want[1])
            done += 1
    assert done >= 10
    for q, shape in ((0.97, (40, 30, 3, 3)), (0.9999, (256, 256))):
        m, c = structured_mask(shape, q, seed=3)
        p = encode_mask(m, c)
        mask, pos = decode_mask_device(p, shape, int(m.sum()), torch.from_numpy(c))
        assert np.array_equal(mask, m) and np.array_equal(pos.numpy(), np.flatnonzero(m))


def test_device_mask_decoder_refuses_what_the_host_refuses():
    m, c = structured_mask((30, 40), 0.9, seed=1)
    good = encode_mask(m, c)
    assert good[0] == 2
    rng = np.random.default_rng(4)
    for _ in range(200):
        bad = bytearray(good)
        bad[int(rng.integers(len(bad)))] ^= 1 << int(rng.integers(8))
        try:
            want = decode_mask_positions(bytes(bad), m.shape, int(m.sum()), c)
        except CodecError:
            with pytest.raises(CodecError):
                decode_mask_device(bytes(bad), m.shape, int(m.sum()), torch.from_numpy(c))
            continue
        got = decode_mask_device(bytes(bad), m.shape, int(m.sum()), torch.from_numpy(c))
        assert np.array_equal(got[0], want[0])
    with pytest.raises(CodecError):
        decode_mask_device(good, m.shape, int(m.sum()), torch.zeros(3))


# -- on a real GPU --------------------------------------------------------------------------------


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_restore_on_cuda_equals_cpu(path):
    data = path.read_bytes()
    on_gpu = fzpack.restore(data, device="cuda")
    sd = on_gpu.get("state_dict", {}) if isinstance(on_gpu, dict) else {}
    assert all(t.device.type == "cuda" for t in sd.values() if isinstance(t, torch.Tensor))
    assert tree_differences(fzpack.restore(data), _to_cpu(on_gpu)) == []


def _lenet_fzp(tmp_path: Path) -> Path:
    """A LeNet-5-Caffe frozen at q = 0.99 (saliency of one random batch), compressed: FACTOR masks with a context."""
    from fzpack.families.freezenet import select_frozen
    from fzpack.models.registry import create_model

    model = create_model("lenet5-caffe")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    frozen = select_frozen(model, (x, y), rate=0.99, seed=1)
    ck = fzpack.checkpoint.make_checkpoint(model, frozen, seed=1, arch={"name": "lenet5-caffe", "config": {}})
    fzpack.checkpoint.save_checkpoint(ck, tmp_path / "m.pt")
    fzpack.compress(tmp_path / "m.pt", tmp_path / "m.fzp")
    return tmp_path / "m.fzp"


def test_device_code_path_on_cpu_for_a_trained_model(tmp_path, monkeypatch):
    path = _lenet_fzp(tmp_path)
    want, ref = fzpack.restore(path), fzpack.load_model(path)
    monkeypatch.setattr(U, "_DEVICE_PATH_ON_CPU", True)
    import fzpack.codecs.mask_device as MD

    shapes: list[tuple[int, ...]] = []
    real = MD._factor
    monkeypatch.setattr(MD, "_factor", lambda data, dims, *a: shapes.append(dims) or real(data, dims, *a))
    assert tree_differences(want, fzpack.restore(path)) == []
    assert len(shapes) == 4  # every weight's FACTOR mask was decoded against its context by the device decoder
    net = fzpack.load_model(path)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))


@pytest.mark.cuda
@CUDA
def test_cuda_restore_uses_no_compiled_cpu_kernel_and_no_dense_host_copy(monkeypatch, tmp_path):
    """A CUDA target: frozen weights come from the torch kernels on the device, and no tensor as large
    as a frozen weight is copied to the host (masks reach the host as positions)."""
    path = _lenet_fzp(tmp_path)
    want = fzpack.restore(path)
    kc = compiled.load()
    if kc is not None:
        for name in ("fill", "dct_fill", "philox_blocks", "philox_halves"):
            monkeypatch.setattr(kc, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("compiled CPU kernel on a CUDA restore")))
    copies: list[int] = []
    real_cpu = torch.Tensor.cpu

    def tracking_cpu(self, *a, **k):
        if self.device.type == "cuda" and self.dtype.is_floating_point:
            copies.append(self.numel())
        return real_cpu(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "cpu", tracking_cpu)
    on_gpu = fzpack.restore(path, device="cuda")
    largest = max(t.numel() for t in on_gpu["state_dict"].values())
    assert all(c < largest for c in copies), copies
    monkeypatch.setattr(torch.Tensor, "cpu", real_cpu)
    assert tree_differences(want, _to_cpu(on_gpu)) == []
    net = fzpack.load_model(path, device="cuda")
    assert all(p.device.type == "cuda" for p in net.parameters())
    ref = fzpack.load_model(path)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))

"""CUDA: the torch path on a GPU must reproduce the CPU (numpy) values bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fzpack.generator import InitSpec, generate, philox4x64, random_mask, random_mask_rows

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SPECS = [
    InitSpec("normal", 0.0, 0.05),
    InitSpec("normal", 0.3, 1.5),
    InitSpec("uniform", -0.2, 0.1),
    InitSpec("uniform", 1e-35, 3e-35),
    InitSpec("pm", 0.07),
    InitSpec("zeros"),
    InitSpec("bank", 0.125, bank="shared", offset=11),
]


def test_philox_cuda_equals_numpy() -> None:
    key = (0x452821E638D01377, 0xBE5466CF34E90C6C)
    a = philox4x64(key, 2**33 + 5, 1000)
    b = philox4x64(key, 2**33 + 5, 1000, backend="torch", device="cuda")
    assert np.array_equal(a.view(np.int64), b.cpu().numpy())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.dist}-{s.p0}")
@pytest.mark.parametrize("shape", [(1,), (7, 3, 3, 3), (512, 512, 3, 3)])
def test_every_dist_bit_exact_on_cuda(spec: InitSpec, shape) -> None:
    banks = {"shared": 100_003}
    cpu = generate(spec, 12345, "features.10.weight", shape, banks=banks)
    gpu = generate(spec, 12345, "features.10.weight", shape, banks=banks, device="cuda")
    assert gpu.device.type == "cuda"
    assert torch.equal(cpu.view(torch.int32), gpu.cpu().view(torch.int32))


def test_mask_on_cuda() -> None:
    m = random_mask(3, "w", (100, 100), 250, device="cuda")
    assert m.device.type == "cuda" and torch.equal(m.cpu(), random_mask(3, "w", (100, 100), 250))


@pytest.mark.parametrize("shape", [(10, 12), (12, 10), (20, 16, 5, 5), (512, 512, 3, 3), (1000, 784), (3, 4096)])
def test_dct_bit_exact_on_cuda(shape) -> None:
    # binary64 +, -, * on the GPU (one kernel per op, no scalar division): the CPU's bits
    spec = InitSpec("dct")
    cpu = generate(spec, 0, "w", shape)
    gpu = generate(spec, 0, "w", shape, device="cuda")
    assert gpu.device.type == "cuda"
    assert torch.equal(cpu.view(torch.int32), gpu.cpu().view(torch.int32))
    half = generate(spec, 0, "w", shape, device="cuda", dtype=torch.float16)
    assert torch.equal(half.cpu(), cpu.to(torch.float16))


@pytest.mark.parametrize("shape, k", [((100, 100), 250), ((512, 256, 3, 3), 20000), ((64,), 7), ((9, 0), 0)])
def test_mask_rows_on_cuda(shape, k) -> None:
    gpu = random_mask_rows(3, "w", shape, k, device="cuda")  # torch backend: sort on the GPU
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), random_mask_rows(3, "w", shape, k))
    via_numpy = random_mask_rows(3, "w", shape, k, device="cuda", backend="numpy")
    assert torch.equal(via_numpy.cpu(), gpu.cpu())

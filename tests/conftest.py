"""Shared fixtures: small frozen-weight checkpoints built with the library's own API."""

from __future__ import annotations

import pytest
import torch

import fzpack
from fzpack.data.synthetic import make_synthetic
from fzpack.families.freezenet import select_frozen as freeze_
from fzpack.models.registry import create_model


def build_frozen_checkpoint(rate: float = 0.99, seed: int = 7, arch: str = "lenet5-caffe", train_steps: int = 3) -> dict:
    """A FreezeNet checkpoint: seeded init, SNIP-saliency mask on synthetic data, a few masked steps."""
    model = create_model(arch)
    x, y = make_synthetic(64, seed=seed)
    x = x.float() / 255
    frozen = freeze_(model, (x, y), rate=rate, seed=seed)
    masks = {n: f.mask for n, f in frozen.items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    params = dict(model.named_parameters())
    for _ in range(train_steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        for n, m in masks.items():
            params[n].grad.mul_(m)
        opt.step()
    return fzpack.checkpoint.make_checkpoint(model, frozen, seed=seed, method="freezenet", arch={"name": arch, "config": {}})


def rebuild_container(data: bytes, edit) -> bytes:
    """Re-serialise a .fzp after ``edit(header, stored_payloads)``, with valid checksums (a lying writer)."""
    from fzpack.container.file import read_container, write_container

    h, payloads = read_container(data)
    stored = [bytes(p) for p in payloads]
    edit(h, stored)
    return write_container(h, stored)


@pytest.fixture(scope="session")
def frozen_ckpt() -> dict:
    return build_frozen_checkpoint()


def spec_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Unsigned LEB128 read as the specs define it, in plain Python: (value, next position)."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos

"""The container test vectors in formats/vectors restore bit for bit, and the writer still makes them.

A failure of the second test after an intended format change means: rerun
`python formats/vectors/make_vectors.py` and update formats/fzpack-v1.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import fzpack
from fzpack.equality import tree_differences
from fzpack.pack import pack

VECTORS = Path(__file__).resolve().parent.parent / "formats" / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_vector_restores_bit_for_bit(name):
    data = (VECTORS / f"{name}.fzp").read_bytes()
    assert hashlib.sha256(data).hexdigest() == MANIFEST[name]["fzp_sha256"]
    want = torch.load(VECTORS / f"{name}.pt", weights_only=True)
    assert tree_differences(want, fzpack.restore(data)) == []


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_writer_reproduces_vector(name):
    obj = torch.load(VECTORS / f"{name}.pt", weights_only=True)
    assert pack(obj).data == (VECTORS / f"{name}.fzp").read_bytes()

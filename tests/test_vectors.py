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
    values = MANIFEST[name].get("values", "lossless")
    src = VECTORS / (f"{name}.src.pt" if values != "lossless" else f"{name}.pt")  # lossy: packed from the original
    obj = torch.load(src, weights_only=True)
    assert pack(obj, values).data == (VECTORS / f"{name}.fzp").read_bytes()


@pytest.mark.parametrize("name", sorted(n for n in MANIFEST if "values" in MANIFEST[n]))
def test_lossy_vector_is_marked_and_close(name):
    data = (VECTORS / f"{name}.fzp").read_bytes()
    assert fzpack.inspect(data)["lossy_values"] == [MANIFEST[name]["values"]]
    src = torch.load(VECTORS / f"{name}.src.pt", weights_only=True)
    assert tree_differences(src, fzpack.restore(data), atol=0.01) == []
    assert tree_differences(src, fzpack.restore(data)) != []  # really lossy

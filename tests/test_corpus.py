"""The golden corpus (formats/vectors/corpus): every file decodes bit for bit forever, and every feature has a file.

The compatibility promise of formats/fzpack-v1.md section 2.1 and fl-update-v1.md section 10 in
test form: a reader change that breaks an old file fails here. The corpus files are never
rewritten; the writer-reproduction tests say whether today's writer still makes the same bytes
(a failure there after an intended writer change means: add new files, keep the old ones).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

import fzpack
from fzpack import fl
from fzpack.equality import tree_differences
from fzpack.pack import pack
from corpus_features import defined, merge, used_fl_base, used_fzp, used_fzu

VECTORS = Path(__file__).resolve().parent.parent / "formats" / "vectors"
CORPUS = VECTORS / "corpus"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
FZP = sorted(n for n, m in MANIFEST.items() if m["kind"] == "fzp")
FZU = sorted(n for n, m in MANIFEST.items() if m["kind"] == "fzu")


def _bytes(name: str) -> bytes:
    data = (CORPUS / f"{name}.{MANIFEST[name]['kind']}").read_bytes()
    assert hashlib.sha256(data).hexdigest() == MANIFEST[name]["sha256"], f"{name} was rewritten: corpus files are frozen"
    return data


@pytest.fixture(scope="module")
def base() -> fl.Base:
    return fl.Base.from_fzp(_bytes("fl_base"))


@pytest.mark.parametrize("name", FZP)
def test_corpus_file_restores_bit_for_bit(name):
    want = torch.load(CORPUS / f"{name}.pt", weights_only=True)
    data = _bytes(name)
    assert tree_differences(want, fzpack.restore(data)) == []
    assert fzpack.verify(data).ok and fzpack.inspect(data)["file_bytes"] == len(data)


@pytest.fixture(scope="module")
def sources() -> dict:
    sys.path.insert(0, str(CORPUS))
    try:
        from make_corpus import writer_files
    finally:
        sys.path.remove(str(CORPUS))
    return writer_files()


@pytest.mark.parametrize("name", [n for n in FZP if MANIFEST[n]["made"] == "writer" and n != "fl_base"])
def test_writer_still_makes_corpus_file(name, sources):
    obj, mode = sources[name]
    assert mode == MANIFEST[name]["values"]
    assert pack(obj, mode).data == _bytes(name)


@pytest.mark.parametrize("name", FZU)
def test_corpus_payload_decodes_bit_for_bit(name, base):
    want = torch.load(CORPUS / f"{name}.values.pt", weights_only=True)
    upd = fl.decode_update(_bytes(name), base)
    assert (upd.round, upd.examples, upd.delta) == (MANIFEST[name]["round"], MANIFEST[name]["examples"], MANIFEST[name]["delta"])
    assert tree_differences(want, upd.values) == []
    if MANIFEST[name]["values"] == "lossless":  # a lossless payload carries the client's values exactly
        assert tree_differences(torch.load(CORPUS / "fl_values.src.pt", weights_only=True), upd.values) == []


@pytest.mark.parametrize("name", FZU)
def test_writer_still_makes_corpus_payload(name, base):
    m = MANIFEST[name]
    values = torch.load(CORPUS / "fl_values.src.pt", weights_only=True)
    blob = fl.encode_update(values, base, round=m["round"], examples=m["examples"], values=m["values"],
                            delta_from=base if m["delta"] else None)
    assert blob == _bytes(name)


def test_corpus_uses_every_id_the_code_defines(base):
    """Codec, role, kind, flag, dist, dtype, generator, tree codec, mask model, q8 grid and index coder, cast inner
    codec, minor version, payload codec, payload flag and layout part ids: each used by some file of formats/vectors."""
    used = merge([used_fzp(p.read_bytes()) for p in sorted(VECTORS.rglob("*.fzp"))]
                 + [used_fzu(p.read_bytes()) for p in sorted(VECTORS.rglob("*.fzu"))] + [used_fl_base(base)])
    missing = {feature: sorted(ids - used.get(feature, set())) for feature, ids in defined().items()}
    assert {k: v for k, v in missing.items() if v} == {}, "add a file to formats/vectors/corpus/make_corpus.py"
    unknown = {feature: sorted(ids - defined()[feature]) for feature, ids in used.items()}
    assert {k: v for k, v in unknown.items() if v} == {}


def test_the_feature_lists_come_from_the_code():
    """A new id in the code's tables is a new requirement on the corpus (no hand-kept list to forget)."""
    from fzpack.codecs.values import CODEC_NAMES
    from fzpack.container import layout

    d = defined()
    assert d["stream codec"] == set(CODEC_NAMES) and d["dtype"] == set(layout.DTYPES) and d["dist"] == set(layout.DISTS)
    assert d["frozen flag"] == {1, 2, 4, 8, 16} and len(d["mask model"]) == 5 and d["tree codec"] == {0, 1, 2}

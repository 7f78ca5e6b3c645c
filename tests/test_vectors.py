"""The container test vectors in formats/vectors restore bit for bit, and the writer still makes them.

A failure of the second test after an intended format change means: rerun
`python formats/vectors/make_vectors.py` and update formats/fzpack-v1.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import zstandard
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


def _header(name):
    from fzpack.container.file import read_container

    return read_container((VECTORS / f"{name}.fzp").read_bytes())


@pytest.mark.parametrize("name, codec", [("tree_json", 0), ("tree_zstd", 1), ("tree_zstd_dict", 2)])
def test_tree_codec_vectors_use_their_codec(name, codec):
    h, _ = _header(name)
    assert h.tree_codec == codec and not h.tensors


def test_tree_dictionary_file_is_the_formats_dictionary():
    """formats/tree-dictionary-v1.bin is normative (fzpack-v1.md section 5.1): the code must use exactly it."""
    from fzpack.container.tree import TREE_DICTIONARY

    data = (VECTORS.parent / "tree-dictionary-v1.bin").read_bytes()
    assert data == TREE_DICTIONARY
    assert hashlib.sha256(data).hexdigest() == "0cc81ab7bbdcbd2607bfcf7cb4cd06db0dc6477a7a824604f54b09d336978f92"
    spec = (VECTORS.parent / "fzpack-v1.md").read_text(encoding="utf-8")
    assert hashlib.sha256(data).hexdigest() in spec


def test_tree_codec_2_decodes_with_a_plain_zstd_and_the_dictionary_file():
    """What an independent reader does: zstd + the raw-content dictionary from formats/, nothing of fzpack."""
    h, _ = _header("tree_zstd_dict")
    d = zstandard.ZstdCompressionDict((VECTORS.parent / "tree-dictionary-v1.bin").read_bytes(),
                                      dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    size = zstandard.frame_content_size(h.tree)
    tree = json.loads(zstandard.ZstdDecompressor(dict_data=d).decompress(h.tree, max_output_size=size))
    assert tree["fzpack"]["method"] == "dense" and tree["state_dict"] == {}
    assert zstandard.get_frame_parameters(h.tree).dict_id == 0


def test_mask_vector_exercises_kernel_and_context_factors():
    """Model 2 (FACTOR) payloads: conv weight with kinds 0, 2, 3 (uniform context), bank tensor with kind 3."""
    h, payloads = _header("mask_factor_context")
    masks = bytes(payloads[h.tensors[0].mask_stream])
    flags, pos = {}, 0
    for t in h.tensors:
        payload = masks[pos:pos + t.mask_length]
        pos += t.mask_length
        assert payload[0] == 2, t.name  # FACTOR
        flags[t.name] = payload[1]
    assert flags["conv.weight"] & 0b1100 == 0b1100  # kernel positions (kind 2) and |W0| bins (kind 3)
    assert flags["fc.weight"] & 0b1000  # |W0| bins on a bank tensor
    assert [t.init.dist for t in h.tensors] == ["uniform", "bank"]


def test_q8_kmeans_vector_uses_a_fitted_codebook():
    from fzpack.codecs.q8 import describe_grid
    from fzpack.codecs.values import Q8

    h, payloads = _header("lossy_q8_kmeans")
    (i,) = [i for i, s in enumerate(h.streams) if s.codec == Q8]
    grid = describe_grid(bytes(payloads[i][1:]))
    n = h.streams[i].raw_length // 4
    assert grid["grid"] == "k-means" and grid["levels"] < n  # 400 distinct values: not the exact codebook


LEGACY = json.loads((VECTORS / "legacy" / "manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_legacy_files_keep_decoding(name):
    """Files an older writer made (formats/vectors/legacy): decoded bit for bit forever, never rewritten."""
    data = (VECTORS / "legacy" / f"{name}.fzp").read_bytes()
    assert hashlib.sha256(data).hexdigest() == LEGACY[name]["fzp_sha256"]
    want = torch.load(VECTORS / "legacy" / f"{name}.pt", weights_only=True)
    assert tree_differences(want, fzpack.restore(data)) == []


@pytest.mark.parametrize("name, minor", [("frozen_normal", 0), ("generic", 0), ("lc_recycled", 0), ("dctps_epl", 1),
                                         ("dctps_epf", 1), ("bank_and_zeros", 1)])
def test_writer_records_the_oldest_sufficient_minor_version(name, minor):
    data = (VECTORS / f"{name}.fzp").read_bytes()
    assert data[8:10] == bytes([1, minor])


def test_a_1_1_feature_in_a_file_that_says_1_0_is_refused():
    import struct
    import zlib

    data = bytearray((VECTORS / "dctps_epl.fzp").read_bytes())
    body = data[20:20 + struct.unpack("<I", data[12:16])[0]]
    data[9] = 0  # claim 1.0; the header CRC does not cover the preamble
    with pytest.raises(fzpack.FormatError, match="says version 1.0 but uses 1.1 features"):
        fzpack.restore(bytes(data))
    assert zlib.crc32(body) & 0xFFFFFFFF == struct.unpack("<I", data[16:20])[0]


def test_a_file_declaring_a_newer_minor_than_its_features_need_is_refused():
    """The preamble has no checksum: a flipped minor byte must still be caught (section 2.1)."""
    data = bytearray((VECTORS / "frozen_normal.fzp").read_bytes())
    assert data[9] == 0
    data[9] = 1
    with pytest.raises(fzpack.FormatError, match="uses no 1.1 feature"):
        fzpack.restore(bytes(data))


def test_a_gaps_mask_payload_makes_a_1_2_file():
    """Mask model 4 (GAPS) is a 1.2 feature (section 2.1) carried by byte 0 of a mask payload, not by
    the header: the reader checks the declared minor against the mask models after the checksums."""
    data = bytearray((VECTORS / "corpus" / "mask_gaps.fzp").read_bytes())
    assert data[9] == 2  # its header alone needs 1.0
    for minor in (0, 1):
        data[9] = minor
        with pytest.raises(fzpack.FormatError, match=f"says version 1.{minor} but uses 1.2 features"):
            fzpack.restore(bytes(data))
    # a coded (FACTOR) mask and nothing else of 1.2: a declared 1.2 is still caught, at the masks
    data = bytearray((VECTORS / "frozen_normal.fzp").read_bytes())
    data[9] = 2
    with pytest.raises(fzpack.FormatError, match="uses no 1.2 feature"):
        fzpack.restore(bytes(data))

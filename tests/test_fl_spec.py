"""formats/fl-update-v1.md, read by a second implementation written from the document alone.

The fingerprint, the values digest and the payload header are recomputed here with hashlib,
struct and json (no fzpack code), and the document's tables are checked against the code.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from fzpack import fl
from fzpack.families import get_family, list_methods
from test_fl_payload import _client, _server
from conftest import spec_varint

SPEC = (Path(__file__).resolve().parent.parent / "formats" / "fl-update-v1.md").read_text(encoding="utf-8")
DTYPE_IDS = {torch.float32: 1, torch.float16: 2, torch.bfloat16: 3, torch.float64: 4, torch.int64: 5, torch.bool: 10}
DIST_IDS = {"zeros": 0, "normal": 1, "uniform": 2, "pm": 3, "bank": 4, "dct": 5}


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def string(s: str) -> bytes:
    b = s.encode("utf-8")
    return varint(len(b)) + b


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def le_bytes(t: torch.Tensor) -> bytes:
    a = t.contiguous().numpy()
    return a.astype(a.dtype.newbyteorder("<")).tobytes()


def head(name: str, dtype: torch.dtype, shape) -> bytes:
    return string(name) + bytes([DTYPE_IDS[dtype], len(shape)]) + b"".join(varint(d) for d in shape)


def spec_layout(ckpt: dict) -> list[tuple[str, int, torch.dtype, tuple]]:
    """Section 2.1."""
    out = []
    tensors = ckpt["fzpack"]["tensors"]
    for name, t in ckpt["state_dict"].items():
        if name not in tensors:
            out.append((name, 0, t.dtype, tuple(t.shape)))
            continue
        k = int(tensors[name]["mask"].sum())
        if k:
            out.append((name, 1, t.dtype, (k,)))
        if "scale" in tensors[name]["init"]:
            out.append((name, 2, torch.float32, ()))
    return out


RECORD_KEYS = {"freezenet": ["mask_seed", "reinit_scheme"], "dctps": ["density", "allocation"],
               "lc": ["spatial", "share", "bank_fraction", "l1", "prune_1x1"], "dense": []}


def spec_fingerprint(ckpt: dict) -> bytes:
    """Section 2.2."""
    e = ckpt["fzpack"]
    family = get_family(e["method"]).name
    record = {k: e["metadata"][k] for k in RECORD_KEYS[family] if k in e["metadata"]}
    d = b"fzpack-fl-base/1" + bytes([1]) + struct.pack("<I", e["seed"]) + string(e["method"])
    d += string(canonical(e["arch"]) if e.get("arch") is not None else "") + string(canonical(record))
    d += varint(len(e["banks"])) + b"".join(string(n) + varint(length) for n, length in e["banks"].items())
    layout = spec_layout(ckpt)
    d += varint(len(layout)) + b"".join(head(n, dt, sh) + bytes([part]) for n, part, dt, sh in layout)
    frozen = [n for n in ckpt["state_dict"] if n in e["tensors"]]
    d += varint(len(frozen))
    for n in frozen:
        t, entry = ckpt["state_dict"][n], e["tensors"][n]
        init, mask = entry["init"], entry["mask"]
        d += head(n, t.dtype, tuple(t.shape)) + bytes([DIST_IDS[init["dist"]]]) + struct.pack("<ff", init["p0"], init["p1"])
        d += string(init["bank"]) + varint(init["offset"]) + string(init["scheme"])
        d += bytes([("scale" in init) | (("delta" in entry) << 1)]) + varint(int(mask.sum()))
        bits = np.packbits(mask.reshape(-1).numpy().astype(np.uint8), bitorder="little").tobytes()
        d += hashlib.sha256(bits).digest()
    return hashlib.sha256(d).digest()


@pytest.mark.parametrize("method", ["freezenet-wd", "dctps", "sparse-epl", "lc-frozen", "dense", "snip"])
def test_fingerprint_and_digest_as_the_document_defines_them(method):
    base = fl.Base.from_model(_server(method), arch={"name": "net", "config": {"width": 1.5}})
    ckpt = base.checkpoint
    assert [(e.name, e.part, e.dtype, e.shape) for e in base.layout] == spec_layout(ckpt)
    assert base.fingerprint == spec_fingerprint(ckpt)
    values = base.values()
    digest = hashlib.sha256(b"fzpack-fl-values/1" + spec_fingerprint(ckpt) + b"".join(le_bytes(v) for v in values)).digest()
    assert fl.values_digest(base, values) == digest


def test_payload_header_as_the_document_defines_it():
    base = fl.Base.from_model(_server("dctps"))
    client = _client(base.to_bytes(), seed=1)
    g0 = base.values()
    for prev in (None, g0):
        blob = fl.encode_update(client, base, round=9, examples=77, values="q8", delta_from=prev)
        assert blob[:8] == bytes.fromhex("89465A550D0A1A0A")
        major, minor, flags, hlen, hcrc = struct.unpack("<BBHII", blob[8:20])
        body = blob[20 : 20 + hlen]
        assert (major, minor, flags) == (1, 0, 0 if prev is None else 1)
        assert hcrc == zlib.crc32(blob[:16] + body)
        assert body[:32] == base.fingerprint and struct.unpack("<QQ", body[32:48]) == (9, 77)
        pos = 48
        if prev is not None:
            assert body[48:80] == fl.values_digest(base, g0)
            pos = 80
        n_streams, pos = body[pos], pos + 1
        streams = []
        for _ in range(n_streams):
            codec, dtype = body[pos], body[pos + 1]
            pos += 2
            lengths = []
            for _ in range(2):
                v, pos = spec_varint(body, pos)
                lengths.append(v)
            crc = struct.unpack("<I", body[pos : pos + 4])[0]
            pos += 4
            streams.append((codec, dtype, *lengths, crc))
        n_entries = body[pos]
        entry_streams = list(body[pos + 1 : pos + 1 + n_entries])
        assert pos + 1 + n_entries == len(body) and n_entries == len(base.layout)
        assert sum(s[3] for s in streams) == len(blob) - 20 - hlen
        for e, s in zip(base.layout, entry_streams):
            assert streams[s][1] == DTYPE_IDS[e.dtype]
            is_weight = e.part == 1 or (e.part == 0 and len(e.shape) >= 2)
            assert (streams[s][0] == 18) <= is_weight  # q8 only on weights (section 5.3)
        at = 20 + hlen
        for s in streams:
            assert zlib.crc32(blob[at : at + s[3]]) == s[4]
            at += s[3]


def test_document_tables_match_the_code():
    assert RECORD_KEYS == {f: list(get_family(f).record_keys) for f in RECORD_KEYS}
    methods = re.search(r"\*\*Family record keys\*\*(.*?)\n\n", SPEC, re.S).group(1)
    for method in list_methods():
        assert f"`{method}`" in methods, method
    assert "89 46 5A 55 0D 0A 1A 0A" in SPEC and fl.payload.MAGIC == bytes.fromhex("89465A550D0A1A0A")
    assert "`fzpack-fl-base/1`" in SPEC and '"fzpack-fl-values/1" (18 bytes)' in SPEC

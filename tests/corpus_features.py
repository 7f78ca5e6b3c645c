"""Which format features a `.fzp` file or an update payload uses, and which ones the code defines.

``defined()`` reads the sets from the code's own constants (codec, dtype, dist, flag, kind, role,
generator, tree codec, mask model, q8 grid and index coder, planes plane coder, payload flag ids), so a feature added
to the code without a golden-corpus file that uses it makes tests/test_corpus.py fail.
``used_fzp`` / ``used_fzu`` read them from the bytes of one file.
"""

from __future__ import annotations

from collections import defaultdict

from fzpack.codecs import mask as mask_codec
from fzpack.codecs import planes, q8, q8_index
from fzpack.codecs.values import BYTEGROUP_ZSTD, CAST_BF16, CAST_FP16, CODEC_NAMES, PLANES, Q8, RAW, ZSTD
from fzpack.container import layout
from fzpack.container.bytes_io import Reader
from fzpack.container.file import read_container
from fzpack import pack as pack_module


def _ids(module, prefix: str) -> set[int]:
    return {v for k, v in vars(module).items() if k.startswith(prefix) and isinstance(v, int) and not isinstance(v, bool)}


def _bits(mask: int) -> set[int]:
    return {1 << i for i in range(mask.bit_length()) if mask >> i & 1}


def defined() -> dict[str, set]:
    """Every id the code knows, per feature (the corpus must use each at least once)."""
    from fzpack.fl import payload

    return {
        "stream codec": set(CODEC_NAMES),
        "stream role": set(layout.ROLE_NAMES),
        "tensor kind": {layout.PLAIN, layout.FROZEN, layout.ALIAS},
        "frozen flag": _bits(layout.KNOWN_FLAGS),
        "dist": set(layout.DISTS),
        "dtype": set(layout.DTYPES),
        "frozen dtype": {layout.DTYPE_IDS[d] for d in layout.FLOAT_DTYPES},
        "generator": set(layout.GENERATOR_NAMES),
        "tree codec": _ids(pack_module, "TREE_"),
        "mask model": _ids(mask_codec, "MODEL_"),
        "q8 grid": set(q8.GRID_NAMES),
        "q8 index coder": set(q8_index.INDEX_CODER_NAMES),
        "cast inner codec": {RAW, ZSTD, BYTEGROUP_ZSTD},
        "minor version": set(range(layout.VERSION[1] + 1)),
        "fl stream codec": set(payload.STREAM_CODECS),
        "planes coder": set(planes.PLANE_CODER_NAMES),
        "fl payload flags": {0} | _bits(payload.KNOWN_FLAGS),
        "fl entry part": {0, 1, 2},
    }


def used_fzp(data: bytes) -> dict[str, set]:
    """The features one `.fzp` file uses."""
    h, payloads = read_container(data)
    out: dict[str, set] = defaultdict(set)
    out["minor version"].add(data[9])
    out["generator"].add(h.generator)
    out["tree codec"].add(h.tree_codec)
    for s, p in zip(h.streams, payloads):
        out["stream codec"].add(s.codec)
        out["stream role"].add(s.role)
        _lossy_features(out, s.codec, bytes(p))
    pos: dict[int, int] = defaultdict(int)
    for t in h.tensors:
        out["tensor kind"].add(t.kind)
        out["dtype"].add(layout.DTYPE_IDS[t.dtype])
        if t.kind != layout.FROZEN:
            continue
        out["frozen dtype"].add(layout.DTYPE_IDS[t.dtype])
        out["dist"].add(layout.DIST_IDS[t.init.dist])
        out["frozen flag"] |= _bits(t.flags)
        if not t.flags & layout.FLAG_MASK_FROM_SEED:
            out["mask model"].add(payloads[t.mask_stream][pos[t.mask_stream]])
            pos[t.mask_stream] += t.mask_length
    return out


def _lossy_features(out: dict[str, set], codec: int, payload: bytes) -> None:
    if codec == PLANES:  # u8 rotation, then per plane: u8 coder, varint length, bytes
        r = Reader(payload[1:], "planes")
        while r.remaining:
            out["planes coder"].add(r.u8())
            r.raw(r.varint())
    elif codec in (CAST_FP16, CAST_BF16):
        out["cast inner codec"].add(payload[1])
    elif codec == Q8:
        r = Reader(payload[1:], "q8")
        grid = q8.parse_grid(r)
        out["q8 grid"].add(grid.kind)
        out["q8 index coder"].add(r.u8())


def used_fzu(data: bytes) -> dict[str, set]:
    """The features one update payload uses (its entry parts need the base: see test_corpus)."""
    from fzpack.fl.payload import PREAMBLE_SIZE, _parse_header

    hlen = int.from_bytes(data[12:16], "little")
    flags = int.from_bytes(data[10:12], "little")
    *_, streams, _ = _parse_header(data[PREAMBLE_SIZE:PREAMBLE_SIZE + hlen], bool(flags & 1))
    out: dict[str, set] = defaultdict(set)
    out["fl payload flags"].add(flags)
    pos = PREAMBLE_SIZE + hlen
    for s in streams:
        out["fl stream codec"].add(s.codec)
        _lossy_features(out, s.codec, data[pos:pos + s.stored_length])
        pos += s.stored_length
    return out


def used_fl_base(base) -> dict[str, set]:
    """The layout entry parts (plain, trained, scale) a base gives its payloads."""
    return {"fl entry part": {e.part for e in base.layout}}


def merge(parts) -> dict[str, set]:
    out: dict[str, set] = defaultdict(set)
    for p in parts:
        for k, v in p.items():
            out[k] |= v
    return out


__all__ = ["defined", "merge", "used_fl_base", "used_fzp", "used_fzu"]

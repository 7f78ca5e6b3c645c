"""Write the golden corpus: a small file for every codec, flag, dist, dtype, tree codec, mask model and payload form.

Run from the repository root:  python formats/vectors/corpus/make_corpus.py

Together with formats/vectors/*.fzp and legacy/ these files use every id the code defines
(tests/corpus_features.py derives the list from the code's constants; tests/test_corpus.py fails
when an id has no file). Each `.fzp` has the `.pt` checkpoint it restores to; each update payload
`fl_*.fzu` is decoded against `fl_base.fzp` and has `<name>.values.pt`, the values it decodes to
(for a delta: against the base's own values). `manifest.json` records every file's SHA-256 and
how it was made: ``"writer"`` files are what today's writer makes from ``writer_files()`` (the
checkpoints are built here, not loaded: ``torch.load`` would merge the alias view into its
target), so the tests also check that the writer still makes them byte for byte; ``"hand"`` files hold a
form the writer never picks (a CONST mask payload: the writer stores such masks from the seed)
and are built field by field with ``write_container``.
Once committed the files are never rewritten: a reader change that breaks one fails CI. The script
writes only the files its manifest does not list yet (a new feature's file is added, the old ones stay).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from make_vectors import _entry, _frozen  # noqa: E402

from fzpack.checkpoint import save_checkpoint  # noqa: E402
from fzpack.container.file import write_container  # noqa: E402
from fzpack.container.layout import (  # noqa: E402
    FROZEN, GENERATOR_PHILOX, ROLE_MASKS, ROLE_VALUES, Header, InitEntry, StreamEntry, TensorEntry,
)
from fzpack.generator import InitSpec, generate, random_mask  # noqa: E402
from fzpack.pack import pack  # noqa: E402
from fzpack.restore import restore  # noqa: E402

ALL_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16, torch.int8,
              torch.uint8, torch.bool, torch.complex64, torch.complex128, torch.uint16, torch.uint32, torch.uint64,
              torch.float8_e4m3fn, torch.float8_e5m2]


def _other_mask(shape: tuple[int, ...], k: int, seed: int = 999) -> torch.Tensor:
    """A k-entry mask that is not the tensor's own seeded mask (so it is coded)."""
    return random_mask(seed, "other", shape, k)


def writer_files() -> dict[str, tuple[object, str]]:
    """name -> (checkpoint, values mode) for the files today's writer makes."""
    out: dict[str, tuple[object, str]] = {}
    # Every dtype of section 4.1 as a plain tensor, and an alias (a view sharing a tensor's storage).
    sd = {}
    for i, dt in enumerate(ALL_DTYPES):
        base = torch.arange(-2, 4, dtype=torch.float64) / 2
        sd[f"t{i}.{str(dt).removeprefix('torch.')}"] = (base if dt.is_floating_point or dt.is_complex else base.round().abs()).to(dt)
    sd["t0.float32.alias"] = sd["t0.float32"].view(6)
    out["dtypes_plain"] = (sd, "lossless")
    # Frozen tensors of every floating dtype, coded masks (a 2-entry mask of 6 codes RAW, a sparse
    # mask of 4000 entries IID, a structured one FACTOR).
    seed = 21
    tensors, sd = {}, {}
    for name, dt, shape, k in (("h.weight", torch.float16, (2, 3), 3), ("b.weight", torch.bfloat16, (40, 100), 30),
                               ("d.weight", torch.float64, (12, 10), 12)):
        mask = _other_mask(shape, k)
        if name == "d.weight":
            mask = torch.zeros(shape, dtype=torch.bool)
            mask[:, 0] = True  # one trained column: the FACTOR model's column factor
        w, t = _frozen(name, InitSpec("normal", 0.0, 0.5), shape, seed, mask, "normal")
        sd[name], tensors[name] = w.to(dt), t
    out["frozen_dtypes"] = ({"state_dict": sd, "fzpack": _entry(seed, "freezenet", tensors)}, "lossless")
    # SCALED without ADDITIVE: FreezeNet-WD's decayed scale on frozen entries with a coded mask.
    seed = 22
    mask = _other_mask((6, 8), 5)
    w, t = _frozen("fc.weight", InitSpec("uniform", -0.5, 0.5), (6, 8), seed, mask, "kaiming_uniform")
    scale = 0.75
    w = torch.where(mask, w, generate(InitSpec("uniform", -0.5, 0.5), seed, "fc.weight", (6, 8)) * scale)
    t["init"]["scale"] = scale
    out["scaled_wd"] = ({"state_dict": {"fc.weight": w}, "fzpack": _entry(seed, "freezenet-wd", {"fc.weight": t})}, "lossless")
    # Lossy casts: fp16 on few values (raw inner payload), bf16 on many (zstd / byte-grouped inner payload).
    for name, mode, shape, k in (("lossy_fp16", "fp16", (4, 4), 3), ("lossy_bf16", "bf16", (40, 50), 600),
                                 ("lossy_fp16_grouped", "fp16", (64, 64), 1500)):
        seed = 23
        mask = random_mask(seed, "fc.weight", shape, k)
        w, t = _frozen("fc.weight", InitSpec("normal", 0.0, 0.1), shape, seed, mask, "normal")
        i = torch.arange(k, dtype=torch.float32)
        w[mask] = torch.sin(i * 0.37) / 3 if name != "lossy_bf16" else (i % 7 - 3) / 5 + 1 / 3
        out[name] = ({"state_dict": {"fc.weight": w, "fc.bias": torch.zeros(shape[0])},
                      "fzpack": _entry(seed, "freezenet", {"fc.weight": t})}, mode)
    # q8 with ANS-coded indices (a skewed histogram over many values), and q8 on float16/bfloat16/float64.
    seed = 24
    tensors, sd = {}, {}
    for name, dt, shape, k in (("a.weight", torch.float32, (50, 60), 2500), ("h.weight", torch.float16, (8, 8), 20),
                               ("b.weight", torch.bfloat16, (8, 8), 20), ("d.weight", torch.float64, (8, 8), 20)):
        mask = random_mask(seed, name, shape, k)
        w, t = _frozen(name, InitSpec("normal", 0.0, 0.1), shape, seed, mask, "normal")
        i = torch.arange(k, dtype=torch.float64)
        w[mask] = ((torch.sin(i * 1.7) ** 5) * 0.8 + torch.cos(i * 0.011) / 50).to(torch.float32)
        sd[name], tensors[name] = w.to(dt), t
    out["lossy_q8_ans_dtypes"] = ({"state_dict": sd, "fzpack": _entry(seed, "freezenet", tensors)}, "q8")
    # Mask model 4 (GAPS): a 65,536-entry weight with 5 trained entries. From 2**16 entries on the
    # encoder charges a payload for its decoding work, and FACTOR / IID would visit every entry.
    seed = 26
    mask = _other_mask((256, 256), 5)
    w, t = _frozen("big.weight", InitSpec("normal", 0.0, 0.05), (256, 256), seed, mask, "normal")
    out["mask_gaps"] = ({"state_dict": {"big.weight": w}, "fzpack": _entry(seed, "freezenet", {"big.weight": t})}, "lossless")
    # 1.2: stream codec 3 (planes) on float32 / float16 / bfloat16 / float64 values streams of 16 KiB,
    # with all three plane coders: raw (random mantissa bytes), zstd, ANS (exponent planes).
    seed = 31
    sd = {"fc.weight": generate(InitSpec("normal", 0.0, 0.05), seed, "fc.weight", (64, 64)),
          "h.weight": generate(InitSpec("normal", 0.0, 0.05), seed, "h.weight", (64, 128)).half(),
          "b.weight": generate(InitSpec("uniform", -0.1, 0.1), seed, "b.weight", (64, 128)).bfloat16(),
          "d.steps": torch.arange(2048, dtype=torch.float64) / 8 - 100}
    out["planes_dtypes"] = (sd, "lossless")
    return out


def hand_files() -> dict[str, tuple[bytes, object]]:
    """name -> (file bytes, the checkpoint it restores to) for forms the writer never picks."""
    # CONST mask payloads (model 0, one byte): an all-False (k = 0) and an all-True (k = numel) coded mask.
    seed, out = 25, {}
    shapes = {"zero.weight": ((3, 4), 0), "full.weight": ((2, 2), 4)}
    sd, tensors, entries = {}, {}, []
    for name, (shape, k) in shapes.items():
        mask = torch.zeros(shape, dtype=torch.bool) if k == 0 else torch.ones(shape, dtype=torch.bool)
        w, t = _frozen(name, InitSpec("normal", 0.0, 1.0), shape, seed, mask, "normal")
        sd[name], tensors[name] = w, t
        entries.append(TensorEntry(name=name, dtype=torch.float32, shape=shape, kind=FROZEN, stream=0,
                                   init=InitEntry(dist="normal", params=(0.0, 1.0)), k=k, mask_stream=1, mask_length=1))
    values = b"".join(sd[n][tensors[n]["mask"]].numpy().tobytes() for n in shapes)
    tree = json.dumps({"state_dict": {"$sd": [0, 1]}, "fzpack": {"convention": 1, "generator": "fzpack-philox4x64-10/v1",
                       "seed": seed, "method": "freezenet", "tensors": {"$fzt": [0, 1]}, "banks": {}, "arch": None,
                       "metadata": {}}}, separators=(",", ":")).encode()
    h = Header(generator=GENERATOR_PHILOX, seed=seed, schemes=["normal"],
               streams=[StreamEntry(0, ROLE_VALUES, 4, len(values), 0, 0), StreamEntry(0, ROLE_MASKS, 1, 2, 0, 0)],
               tensors=entries, tree=tree)
    out["mask_const"] = (write_container(h, [values, b"\x00\x00"]), {"state_dict": sd, "fzpack": _entry(seed, "freezenet", tensors)})
    return out


def fl_files() -> tuple[object, list[torch.Tensor], dict[str, dict]]:
    """The FL base checkpoint, the client's values, and name -> encode_update arguments."""
    base_ckpt = torch.load(HERE.parent / "dctps_epl.pt", weights_only=True)
    sd = dict(base_ckpt["state_dict"])
    sd["head.weight"] = (torch.arange(512, dtype=torch.float32).reshape(16, 32) % 9 - 4) / 8
    sd["bn.running_mean"] = torch.zeros(16)
    sd["bn.num_batches_tracked"] = torch.tensor(5)
    sd["codes.buffer"] = (torch.arange(256) % 16).to(torch.uint8)  # 1-byte items: plain zstd, not byte-grouped
    base_ckpt["state_dict"] = sd
    from fzpack import fl

    base = fl.Base.from_checkpoint(base_ckpt)
    values = []
    for j, v in enumerate(base.values()):
        if v.dtype.is_floating_point:
            values.append(v + torch.full_like(v, (j + 1) / 64) * torch.linspace(-1, 1, v.numel()).reshape(v.shape).to(v.dtype))
        else:
            values.append(v + 3)
    payloads = {"fl_lossless": {}, "fl_fp16": {"values": "fp16"}, "fl_bf16": {"values": "bf16"}, "fl_q8": {"values": "q8"},
                "fl_delta": {"delta": True}, "fl_delta_q8": {"values": "q8", "delta": True}}
    return base_ckpt, values, payloads


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    """Write the files that the manifest does not list yet; a listed file is never rewritten."""
    from fzpack import fl
    from fzpack.equality import tree_differences

    path = HERE / "manifest.json"
    old: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}
    manifest: dict[str, dict] = {}
    for name, (obj, mode) in writer_files().items():
        if name in old:
            manifest[name] = old[name]
            continue
        data = pack(obj, mode).data
        (HERE / f"{name}.fzp").write_bytes(data)
        restored = restore(data)
        if mode == "lossless":
            assert tree_differences(obj, restored) == [], name
        save_checkpoint(restored, HERE / f"{name}.pt")
        manifest[name] = {"kind": "fzp", "made": "writer", "values": mode, "bytes": len(data), "sha256": _sha(data)}
    for name, (data, obj) in hand_files().items():
        if name in old:
            manifest[name] = old[name]
            continue
        (HERE / f"{name}.fzp").write_bytes(data)
        assert tree_differences(obj, restore(data)) == [], name
        save_checkpoint(obj, HERE / f"{name}.pt")
        manifest[name] = {"kind": "fzp", "made": "hand", "bytes": len(data), "sha256": _sha(data)}
    if all(name in old for name in ("fl_base", *fl_files()[2])):
        manifest.update({k: v for k, v in old.items() if k not in manifest})
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        print(json.dumps({k: v["bytes"] for k, v in manifest.items()}, indent=2))
        return
    base_ckpt, values, payloads = fl_files()
    base_data = pack(base_ckpt).data
    (HERE / "fl_base.fzp").write_bytes(base_data)
    save_checkpoint(base_ckpt, HERE / "fl_base.pt")
    manifest["fl_base"] = {"kind": "fzp", "made": "writer", "values": "lossless", "bytes": len(base_data), "sha256": _sha(base_data)}
    base = fl.Base.from_fzp(base_data)
    torch.save(values, HERE / "fl_values.src.pt")
    for name, kw in payloads.items():
        blob = fl.encode_update(values, base, round=7, examples=321, values=kw.get("values", "lossless"),
                                delta_from=base if kw.get("delta") else None)
        (HERE / f"{name}.fzu").write_bytes(blob)
        torch.save(fl.decode_update(blob, base).values, HERE / f"{name}.values.pt")
        manifest[name] = {"kind": "fzu", "made": "writer", "values": kw.get("values", "lossless"), "delta": bool(kw.get("delta")),
                          "round": 7, "examples": 321, "bytes": len(blob), "sha256": _sha(blob)}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps({k: v["bytes"] for k, v in manifest.items()}, indent=2))


if __name__ == "__main__":
    main()

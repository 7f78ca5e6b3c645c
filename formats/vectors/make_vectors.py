"""Write the container test vectors: small `.fzp` files and the `.pt` checkpoints they restore to.

Run from the repository root:  python formats/vectors/make_vectors.py
Writes formats/vectors/<name>.fzp, <name>.pt and manifest.json (sizes and SHA-256 of each file);
a lossy vector (manifest "values": q8) also has <name>.src.pt, the checkpoint it was packed from,
while <name>.pt holds what the lossy file restores to.
Every checkpoint is built from fzpack's own generator and fixed constants, so the vectors are
reproducible on any machine.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import torch

from fzpack.checkpoint import save_checkpoint
from fzpack.generator import InitSpec, generate, init_spec, random_mask, random_mask_rows
from fzpack.pack import pack

HERE = Path(__file__).resolve().parent


def _frozen(name: str, spec: InitSpec, shape: tuple[int, ...], seed: int, mask: torch.Tensor, scheme: str,
            banks: dict | None = None) -> tuple[torch.Tensor, dict]:
    w = generate(spec, seed, name, shape, banks=banks)
    k = int(mask.sum())
    w[mask] = torch.arange(1, k + 1, dtype=torch.float32) / 64  # exact "trained" values
    return w, {"init": {**spec.to_dict(), "scheme": scheme}, "mask": mask}


def _entry(seed: int, method: str, tensors: dict, banks: dict | None = None) -> dict:
    return {"convention": 1, "generator": "fzpack-philox4x64-10/v1", "seed": seed, "method": method,
            "tensors": tensors, "banks": banks or {}, "arch": None, "metadata": {}}


def vectors() -> dict[str, object]:
    out: dict[str, object] = {}
    # 1. A frozen normal tensor with a structured (coded) mask, plus a plain bias.
    seed = 1
    mask = torch.zeros(8, 6, dtype=torch.bool)
    mask[1, :3] = mask[5, 2] = mask[6, 4] = True
    w, t = _frozen("fc.weight", InitSpec("normal", 0.0, 0.25), (8, 6), seed, mask, "xavier_normal")
    out["frozen_normal"] = {"state_dict": {"fc.weight": w, "fc.bias": torch.linspace(-1, 1, 8)},
                            "fzpack": _entry(seed, "freezenet", {"fc.weight": t})}
    # 2. A random-mask freeze: the mask is regenerated from the seed and costs no bytes.
    seed = 2
    mask = random_mask(seed, "conv.weight", (4, 2, 3, 3), 5)
    w, t = _frozen("conv.weight", InitSpec("uniform", -0.5, 0.5), (4, 2, 3, 3), seed, mask, "kaiming_uniform")
    out["random_mask"] = {"state_dict": {"conv.weight": w}, "fzpack": _entry(seed, "random-mask", {"conv.weight": t})}
    # 3. Exceptions (edited frozen entries) in one tensor, a fully decayed tensor stored dense.
    seed = 3
    m1 = torch.zeros(5, 5, dtype=torch.bool)
    m1[0, 0] = True
    a, ta = _frozen("a.weight", InitSpec("pm", 0.125), (5, 5), seed, m1, "pm_sigma")
    a[4, 4], a[2, 1] = 9.0, -0.0
    b, tb = _frozen("b.weight", InitSpec("normal", 0.0, 1.0), (3, 4), seed, torch.eye(3, 4, dtype=torch.bool), "normal")
    b = b * 0.5
    out["exceptions_dense"] = {"state_dict": {"a.weight": a, "b.weight": b},
                               "fzpack": _entry(seed, "freezenet", {"a.weight": ta, "b.weight": tb})}
    # 4. Two layers sharing one random bank (LCResNet recycled sharing), SNIP zeros.
    seed = 4
    banks = {"bank0": 50}
    m = torch.zeros(4, 9, dtype=torch.bool)
    m[0, 0] = True
    s1, t1 = _frozen("l1.weight", InitSpec("bank", 0.5, bank="bank0", offset=0), (4, 9), seed, m, "bank", banks)
    s2, t2 = _frozen("l2.weight", InitSpec("bank", 0.25, bank="bank0", offset=36), (4, 9), seed, m, "bank", banks)
    z, tz = _frozen("p.weight", InitSpec("zeros"), (3, 3), seed, torch.eye(3, dtype=torch.bool), "zeros")
    out["bank_and_zeros"] = {"state_dict": {"l1.weight": s1, "l2.weight": s2, "p.weight": z},
                             "fzpack": _entry(seed, "lcresnet", {"l1.weight": t1, "l2.weight": t2, "p.weight": tz}, banks)}
    # 5. No frozen structure: a nested generic checkpoint with every kind of value.
    sd = OrderedDict([("w", torch.arange(6, dtype=torch.float32).reshape(2, 3)), ("n", torch.tensor(7)),
                      ("h", torch.tensor([1.5, -2.0], dtype=torch.bfloat16)), ("flag", torch.tensor([True, False]))])
    sd._metadata = OrderedDict([("", {"version": 1})])  # type: ignore[attr-defined]
    out["generic"] = {"model": sd, "epoch": 3, "lr": 0.1, "nan": float("nan"), "tuple": (1, "x"), "keys": {0: None},
                      "bytes": b"\x00\xff", "dtype": torch.float16, "tied": [sd["w"], sd["w"]]}
    # 6-8. Tensor-free files whose object tree the writer codes with tree codec 0 (JSON), 1 (zstd)
    # and 2 (zstd with the fixed dictionary, formats/tree-dictionary-v1.bin): the smallest wins.
    out["tree_json"] = {"epoch": 1}
    out["tree_zstd"] = {"log": "abcdefgh" * 100}
    out["tree_zstd_dict"] = {"state_dict": {}, "fzpack": {**_entry(0, "dense", {}), "metadata": {"dataset": "fashion-mnist"},
                                                          "arch": {"name": "lenet5-caffe", "config": {"num_classes": 10, "in_channels": 1, "input_size": 28}}}}
    # 9. FACTOR mask payloads with the kernel-position factor (kind 2) and |W0| bins (kind 3) on a
    # uniform conv weight, and |W0| bins alone on a tensor drawn from a bank (context = bank * scale).
    seed = 7
    shape = (16, 8, 3, 3)
    spec = InitSpec("uniform", -0.25, 0.25)
    w0 = generate(spec, seed, "conv.weight", shape)
    m = torch.zeros(shape, dtype=torch.bool)
    m[:, :, 1, 1] = w0[:, :, 1, 1].abs() > 0.1  # centre taps with a large |W0|
    m[:, :, 0, 0] |= w0[:, :, 0, 0].abs() > 0.22
    m[3] = m[9] = False
    c, tc = _frozen("conv.weight", spec, shape, seed, m, "kaiming_uniform")
    banks = {"shared": 400}
    bspec = InitSpec("bank", 0.125, bank="shared", offset=17)
    b0 = generate(bspec, seed, "fc.weight", (24, 20), banks=banks)
    bm = b0.abs() > 0.1
    bm[:, 5:8] = False
    b, tb = _frozen("fc.weight", bspec, (24, 20), seed, bm, "bank", banks)
    out["mask_factor_context"] = {"state_dict": {"conv.weight": c, "fc.weight": b},
                                  "fzpack": _entry(seed, "freezenet", {"conv.weight": tc, "fc.weight": tb}, banks)}
    # 10-11. Format 1.1: DCT-plus-Sparse tensors (dist dct, SCALED alpha, ADDITIVE offsets) on seeded
    # supports, equal per layer (random_mask) and equal per filter (random_mask_rows, MASK_PER_ROW).
    for name, draw in (("dctps_epl", random_mask), ("dctps_epf", random_mask_rows)):
        seed = 10
        tensors, sd = {}, {}
        for tname, shape, k, alpha in (("conv.weight", (4, 2, 3, 3), 9, 0.75), ("fc.weight", (6, 10), 7, 1.25)):
            mask = draw(seed, tname, shape, k)
            delta = (torch.arange(1, k + 1, dtype=torch.float32) - 4) / 32  # exact offsets S
            w = generate(InitSpec("dct"), seed, tname, shape) * alpha
            w.view(-1)[mask.view(-1)] += delta
            sd[tname] = w
            tensors[tname] = {"init": {**InitSpec("dct").to_dict(), "scheme": "dct", "scale": alpha}, "mask": mask, "delta": delta}
        sd["fc.bias"] = torch.linspace(-0.5, 0.5, 6)
        out[name] = {"state_dict": sd, "fzpack": {**_entry(seed, "dctps", tensors), "metadata": {"density": 0.1}}}
    # 12. LC: two spatial convs drawn from one recycled bank (tiled), a 1x1 conv pruned to a coded mask.
    seed, banks = 12, {"lc.spatial": 27}
    tensors, sd = {}, {}
    for tname, shape in (("a.spatial.weight", (4, 2, 3, 3)), ("b.spatial.weight", (6, 4, 3, 3))):
        spec = init_spec("bank", shape, bank="lc.spatial")
        sd[tname] = generate(spec, seed, tname, shape, banks=banks)
        tensors[tname] = {"init": {**spec.to_dict(), "scheme": "bank"}, "mask": torch.zeros(shape, dtype=torch.bool)}
    pw = (torch.arange(48, dtype=torch.float32).reshape(6, 8, 1, 1) - 20) / 16
    keep = pw.abs() > 1.0
    sd["b.pointwise.weight"] = torch.where(keep, pw, 0.0)  # +0.0 where pruned: what zeros regenerates
    tensors["b.pointwise.weight"] = {"init": {**InitSpec("zeros").to_dict(), "scheme": "zeros"}, "mask": keep}
    sd["bn.running_mean"] = torch.zeros(6)
    out["lc_recycled"] = {"state_dict": sd, "fzpack": {**_entry(seed, "lc-frozen", tensors, banks),
                                                        "metadata": {"share": "recycled", "bank_fraction": 8, "prune_1x1": 0.5}}}
    return out


# Lossy vectors: name -> values mode. <name>.src.pt is the original checkpoint, <name>.fzp what
# pack(src, values=mode) writes, and <name>.pt what that file restores to (dequantized values).
LOSSY = {"lossy_q8": "q8", "lossy_q8_kmeans": "q8"}


def lossy_vectors() -> dict[str, object]:
    # 6. q8 trained values: a smooth tensor (uniform grid) and a few-valued one (exact codebook).
    seed = 6
    m1 = random_mask(seed, "fc.weight", (16, 16), 60)
    w1, t1 = _frozen("fc.weight", InitSpec("normal", 0.0, 0.25), (16, 16), seed, m1, "xavier_normal")
    w1[m1] = torch.linspace(-1, 1, 60) ** 3  # not on any 256-level grid: really lossy
    m2 = torch.zeros(8, 8, dtype=torch.bool)
    m2[2, :5] = m2[6, 3:] = True
    w2, t2 = _frozen("out.weight", InitSpec("uniform", -0.5, 0.5), (8, 8), seed, m2, "kaiming_uniform")
    w2[m2] = torch.tensor([0.5, -0.25, 1.0, 0.5, 0.5, -0.25, 1.0, 1.0, 0.5, -0.25])
    out = {"lossy_q8": {"state_dict": {"fc.weight": w1, "out.weight": w2, "out.bias": torch.linspace(-1, 1, 8)},
                        "fzpack": _entry(seed, "freezenet", {"fc.weight": t1, "out.weight": t2})}}
    # 7. q8 with a k-means codebook: 400 distinct values in 4 tight clusters (too many for the exact
    # codebook). The values are multiples of 2^-18, so every cluster sum is exact in float64 and
    # the fitted levels do not depend on summation order (the writer reproduces this on any CPU).
    seed = 8
    m3 = random_mask(seed, "head.weight", (24, 24), 400)
    w3, t3 = _frozen("head.weight", InitSpec("normal", 0.0, 0.1), (24, 24), seed, m3, "normal")
    i = torch.arange(400)
    w3[m3] = torch.tensor([-0.5, 0.0, 0.25, 0.75])[i % 4] + ((i // 4) - 50).float() * 2**-18
    out["lossy_q8_kmeans"] = {"state_dict": {"head.weight": w3}, "fzpack": _entry(seed, "freezenet", {"head.weight": t3})}
    return out


def main() -> None:
    from fzpack.restore import restore

    manifest = {}
    for name, obj in vectors().items():
        save_checkpoint(obj, HERE / f"{name}.pt")
        data = pack(obj).data
        (HERE / f"{name}.fzp").write_bytes(data)
        manifest[name] = {"fzp_bytes": len(data), "fzp_sha256": hashlib.sha256(data).hexdigest()}
    for name, obj in lossy_vectors().items():
        save_checkpoint(obj, HERE / f"{name}.src.pt")
        data = pack(obj, LOSSY[name]).data
        (HERE / f"{name}.fzp").write_bytes(data)
        save_checkpoint(restore(data), HERE / f"{name}.pt")
        manifest[name] = {"fzp_bytes": len(data), "fzp_sha256": hashlib.sha256(data).hexdigest(), "values": LOSSY[name]}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()

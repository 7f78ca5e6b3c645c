"""Format benchmark (issue 2): where the bytes go, how close the mask coder is to its bounds, and speed.

    python benchmarks/bench_format.py            # full run, writes docs/results.md sections
    python benchmarks/bench_format.py --quick    # fewer seeds / repeats, prints only

Sizes: LeNet-5-Caffe and LeNet-300-100 FreezeNets at q = 0.99 with real SNIP masks (saliency
of one batch of 100 Fashion-MNIST training images, Xavier-normal init from fzpack's generator),
trained briefly with `fzpack.train` (SGD on the trained entries only) so that the stored values
are trained values.
Speed: compress / restore of LeNet-5-Caffe and of VGG16-D (15.3 M weights, q = 0.99, mask from
the saliency of a batch of 128 random 32x32 images: CIFAR is not available here) against
torch.load and safetensors loading of the dense checkpoint; generator throughput.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zstandard
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import fzpack
from common import best_of, md_table, write_section
from fzpack.codecs.mask import mask_entropy_bounds
from fzpack.freezenet import freeze_
from fzpack.generator import generate
from fzpack.models.registry import create_model
from fzpack.pack import pack
from fzpack.train import TrainConfig, train
from fzpack.unpack import unpack


def lenet_checkpoint(arch: str, seed: int, steps: int, rate: float = 0.99) -> dict:
    """A FreezeNet trained for ``steps`` SGD steps (batch 100) on Fashion-MNIST by the trainer."""
    config = TrainConfig(method="freezenet", arch=arch, dataset="fashion-mnist", freeze_rate=rate, seed=seed,
                         val_split=0.0, epochs=max(1, -(-steps // 600)), max_steps=steps, device="cpu", progress=False)
    return train(config).checkpoint


def vgg_checkpoint(seed: int, rate: float = 0.99) -> dict:
    model = create_model("vgg16-d")
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    frozen = freeze_(model, (x, y), rate=rate, seed=seed)
    with torch.no_grad():  # stand-in for training: move every trained entry and every bias a little
        for n, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.01
            p.add_(noise * frozen[n].mask if n in frozen else noise)
    return fzpack.make_checkpoint(model, frozen, seed=seed, arch={"name": "vgg16-d", "config": {}})


def mask_rows(ckpt: dict) -> tuple[list[list], dict]:
    """Per-layer mask cost: fzpack's stream vs the i.i.d. / row-column bounds and zstd-19 of packbits."""
    res = pack(ckpt)
    mask_bytes = {t.name: t.mask_length for t in res.header.tensors if t.kind == 1}
    rows, tot = [], dict.fromkeys(["n", "k", "iid", "rowcol", "zstd", "ours"], 0.0)
    for name, t in ckpt["fzpack"]["tensors"].items():
        m = t["mask"].numpy()
        b = mask_entropy_bounds(m)
        z = len(zstandard.ZstdCompressor(level=19).compress(np.packbits(m.reshape(-1)).tobytes()))
        r = [name, b["n"], b["k"], b["iid_bits"] / 8, b["rowcol_bits"] / 8, z, mask_bytes[name], mask_bytes[name] / (b["iid_bits"] / 8)]
        rows.append(r)
        for key, v in zip(tot, r[1:7]):
            tot[key] += v
    rows.append(["**total**", int(tot["n"]), int(tot["k"]), tot["iid"], tot["rowcol"], int(tot["zstd"]), int(tot["ours"]), tot["ours"] / tot["iid"]])
    return rows, {**tot, "file": len(res.data), "breakdown": _breakdown(res)}


def _breakdown(res) -> dict:
    from fzpack.sizes import breakdown

    return breakdown(res.header, int.from_bytes(res.data[12:16], "little"))


def size_section(args) -> dict:
    out, body = {}, []
    for arch in ("lenet5-caffe", "lenet-300-100"):
        totals = []
        for i, seed in enumerate(args.seeds):
            ck = lenet_checkpoint(arch, seed, args.steps)
            rows, tot = mask_rows(ck)
            totals.append(tot)
            if i == 0:
                body.append(f"### {arch}, q = 0.99, seed {seed}: mask stream per layer (bytes)\n")
                body.append(md_table(["tensor", "entries", "trained", "i.i.d. bound", "row/col bound", "zstd-19 packbits", "fzpack mask", "fzpack / i.i.d."], rows))
                bd = tot["breakdown"]
                body.append(f"\nWhole file: {tot['file']:,} B = header {bd['header']:,} ({100 * bd['header'] / tot['file']:.2f} %) + mask {bd['mask']:,} "
                            f"+ trained values {bd['trained']:,} + other tensors {bd['other']:,} + index {bd['index']:,}.\n")
        ratio = [t["ours"] / t["iid"] for t in totals]
        body.append(f"{arch} over seeds {list(args.seeds)}: fzpack mask / i.i.d. bound = " + ", ".join(f"{r:.3f}" for r in ratio)
                    + "; fzpack mask / zstd-19 = " + ", ".join(f"{t['ours'] / t['zstd']:.3f}" for t in totals)
                    + "; header share = " + ", ".join(f"{100 * t['breakdown']['header'] / t['file']:.2f} %" for t in totals) + "\n")
        out[arch] = totals
    if args.write:
        write_section("format-sizes", "## Format: file size breakdown and mask stream vs bounds (issue 2)\n\n"
                      "Real SNIP masks (one batch of 100 Fashion-MNIST training images, Xavier-normal init from the seed), "
                      f"values after {args.steps} SGD steps of `fzpack.train` (trained entries only). Bounds exclude side information; fzpack's mask bytes include it.\n\n" + "\n".join(body))
    print("\n".join(body))
    return out


def speed_rows(name: str, ck: dict, repeat: int) -> list:
    with tempfile.TemporaryDirectory() as d:
        pt, fzp = Path(d) / "m.pt", Path(d) / "m.fzp"
        dense = {k: v for k, v in ck["state_dict"].items()}
        buf = io.BytesIO()
        torch.save(dense, buf)
        pt.write_bytes(buf.getvalue())
        st = st_save(dense)
        fzpack.save_checkpoint(ck, Path(d) / "ck.pt")
        t_comp = best_of(lambda: fzpack.compress(Path(d) / "ck.pt", fzp), repeat=max(1, repeat // 2))
        data = fzp.read_bytes()
        t_rest = best_of(lambda: unpack(data), repeat=repeat)
        t_torch = best_of(lambda: torch.load(io.BytesIO(pt.read_bytes()), weights_only=True), repeat=repeat)
        t_st = best_of(lambda: st_load(st), repeat=repeat)
    n = sum(v.numel() for v in dense.values())
    return [name, n, len(buf.getvalue()), len(st), len(data), t_comp * 1e3, t_rest * 1e3, t_torch * 1e3, t_st * 1e3, t_rest / t_torch]


def regen_rows(repeat: int) -> list[list]:
    model = create_model("vgg16-d", device="meta")
    shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
    total = sum(int(np.prod(s)) for _, s in shapes)
    rows = []
    for dist, spec in (("normal (Xavier)", fzpack.InitSpec("normal", 0.0, 0.02)), ("uniform (Kaiming)", fzpack.InitSpec("uniform", -0.03, 0.03)),
                       ("pm_sigma", fzpack.InitSpec("pm", 0.02))):
        t = best_of(lambda: [generate(spec, 1, n, s) for n, s in shapes], repeat=repeat)
        rows.append([dist, total, t * 1e3, total / t / 1e6])
    return rows


def speed_section(args) -> None:
    rows = [speed_rows("lenet5-caffe", lenet_checkpoint("lenet5-caffe", 1, 0), args.repeat),
            speed_rows("vgg16-d", vgg_checkpoint(1), max(2, args.repeat // 2))]
    body = ["## Format: compress / restore speed vs torch.load and safetensors (issue 2)\n",
            "q = 0.99. Restore = full decode of the `.fzp` bytes into the checkpoint object on CPU (regeneration included); "
            "torch.load and safetensors load the dense state dict from memory. Best of several runs.\n",
            md_table(["model", "parameters", "dense .pt B", "safetensors B", ".fzp B", "compress ms", "restore ms", "torch.load ms", "safetensors ms", "restore / torch.load"], rows),
            "\n### Generator throughput: all VGG16-D conv/linear weights\n",
            md_table(["distribution", "weights", "ms", "M weights/s"], regen_rows(args.repeat))]
    if args.write:
        write_section("format-speed", "\n".join(body))
    print("\n".join(body))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one seed, few repeats, do not write docs/results.md")
    ap.add_argument("--json", action="store_true", help="print the size totals as JSON")
    args = ap.parse_args()
    args.seeds = (1,) if args.quick else (1, 2, 3)
    args.steps = 100 if args.quick else 600
    args.repeat = 2 if args.quick else 7
    args.write = not args.quick
    t = time.perf_counter()
    sizes = size_section(args)
    speed_section(args)
    if args.json:
        print(json.dumps({a: [{k: v for k, v in r.items() if k != "breakdown"} for r in rs] for a, rs in sizes.items()}, indent=2))
    print(f"done in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()

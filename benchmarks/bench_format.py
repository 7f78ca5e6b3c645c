"""Format benchmark (issue 2): where the bytes go and how close the mask coder is to its bounds.

    python benchmarks/bench_format.py            # full run, writes its docs/results.md section
    python benchmarks/bench_format.py --quick    # one seed, fewer steps, prints only

Sizes: LeNet-5-Caffe and LeNet-300-100 FreezeNets at q = 0.99 with real SNIP masks (saliency
of one batch of 100 Fashion-MNIST training images, Xavier-normal init from fzpack's generator),
trained briefly with `fzpack.train` (SGD on the trained entries only) so that the stored values
are trained values.
Generator throughput (VGG16-D, every distribution, beside a memory copy): bench_generator.py; restore and
load times: bench_speed.py.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import zstandard

from common import md_table, write_section
from fzpack.codecs.mask import mask_entropy_bounds
from fzpack.pack import pack
from fzpack.train import TrainConfig, train


def lenet_checkpoint(arch: str, seed: int, steps: int, rate: float = 0.99) -> dict:
    """A FreezeNet trained for ``steps`` SGD steps (batch 100) on Fashion-MNIST by the trainer."""
    config = TrainConfig(method="freezenet", arch=arch, dataset="fashion-mnist", freeze_rate=rate, seed=seed,
                         val_split=0.0, epochs=max(1, -(-steps // 600)), max_steps=steps, device="cpu", progress=False)
    return train(config).checkpoint


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one seed, fewer steps, do not write docs/results.md")
    ap.add_argument("--json", action="store_true", help="print the size totals as JSON")
    args = ap.parse_args()
    args.seeds = (1,) if args.quick else (1, 2, 3)
    args.steps = 100 if args.quick else 600
    args.write = not args.quick
    t = time.perf_counter()
    sizes = size_section(args)
    if args.json:
        print(json.dumps({a: [{k: v for k, v in r.items() if k != "breakdown"} for r in rs] for a, rs in sizes.items()}, indent=2))
    print(f"done in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()

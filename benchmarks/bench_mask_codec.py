"""Measure the mask codec on real SNIP/FreezeNet masks (LeNet-5-Caffe, LeNet-300-100).

Usage (from the repository root):
    PYTHONPATH=src python benchmarks/bench_mask_codec.py [--seeds 0 1 2] [--q 0.99] [--json]
    PYTHONPATH=src python benchmarks/bench_mask_codec.py --speed   # 15M-entry timing too

Per layer it prints n, k, the i.i.d. bound n*H(k/n), the per-row/per-column Bernoulli bound
(min of the two, no side information), zstd-19 of np.packbits(mask), our payload (all side
information included) with and without the |W0| context, and ours / i.i.d. bound. The
targets checked at the end: total <= 0.80 x i.i.d. bound, and smaller than zstd-19 per layer
and in total.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import zstandard

try:
    from fzpack.codecs.mask import decode_mask, encode_mask, mask_entropy_bounds
except ImportError:  # running from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from fzpack.codecs.mask import decode_mask, encode_mask, mask_entropy_bounds

FMNIST = Path("/usr/share/datasets/fashion-mnist")
TARGET_RATIO = 0.80


# --------------------------------------------------------------------------------------------
# Mask building (self-contained for now; to be replaced by fzpack's model/saliency code).
# --------------------------------------------------------------------------------------------
def build_masks(net: str, seed: int, q: float, data_dir: Path = FMNIST):
    """SNIP/FreezeNet masks: [(layer name, bool mask, |W0| float32)] for one init + batch.

    Xavier-normal weights from torch.Generator(seed), zero biases; saliency |dL/dW * W| on a
    batch of 100 Fashion-MNIST training images (drawn with default_rng(seed), normalised with
    mean 0.2860 / std 0.3530); global top-k with k = floor((1 - q) * total weights); a layer
    left without any trainable weight gets one random entry.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LeNet5Caffe(nn.Module):  # Caffe/SNIP variant: no ReLU after the convolutions
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
            self.fc1, self.fc2 = nn.Linear(800, 500), nn.Linear(500, 10)

        def forward(self, x):
            x = F.max_pool2d(self.conv2(F.max_pool2d(self.conv1(x), 2)), 2)
            return self.fc2(F.relu(self.fc1(x.flatten(1))))

    class LeNet300(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(784, 300), nn.Linear(300, 100)
            self.fc3 = nn.Linear(100, 10)

        def forward(self, x):
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))

    with gzip.open(data_dir / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(data_dir / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    model = LeNet5Caffe() if net == "lenet5" else LeNet300()
    gen = torch.Generator().manual_seed(seed)
    weights = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p, generator=gen)
                weights.append((name, p))
            else:
                p.zero_()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), 100, replace=False)
    x = torch.tensor((images[idx].astype(np.float32) / 255 - 0.2860) / 0.3530).unsqueeze(1)
    y = torch.tensor(labels[idx].astype(np.int64))
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), [p for _, p in weights])
    scores = torch.cat([(g * p).abs().flatten() for g, (_, p) in zip(grads, weights)])
    k = math.floor((1 - q) * scores.numel())
    chosen = torch.zeros(scores.numel(), dtype=torch.bool)
    chosen[torch.topk(scores, k).indices] = True
    out, off = [], 0
    for name, p in weights:
        m = chosen[off : off + p.numel()].reshape(p.shape).numpy().copy()
        off += p.numel()
        if not m.any():
            m.flat[int(rng.integers(m.size))] = True
        out.append((name, m, p.detach().abs().numpy().astype(np.float32)))
    return out


# --------------------------------------------------------------------------------------------
def measure_layer(name: str, mask: np.ndarray, ctx: np.ndarray) -> dict:
    b = mask_entropy_bounds(mask)
    t = time.perf_counter()
    ours = encode_mask(mask, ctx)
    enc_s = time.perf_counter() - t
    t = time.perf_counter()
    back = decode_mask(ours, mask.shape, int(mask.sum()), ctx)
    dec_s = time.perf_counter() - t
    assert np.array_equal(back, mask), f"{name}: round trip failed"
    plain = encode_mask(mask)
    assert np.array_equal(decode_mask(plain, mask.shape, int(mask.sum())), mask)
    zstd = len(zstandard.ZstdCompressor(level=19).compress(np.packbits(mask).tobytes()))
    return {
        "layer": name, "shape": list(mask.shape), "n": b["n"], "k": b["k"],
        "iid_B": b["iid_bits"] / 8, "rowcol_B": b["rowcol_bits"] / 8,
        "independence_B": b["independence_bits"] / 8, "zstd19_B": zstd,
        "ours_B": len(ours), "ours_model": ours[0], "ours_noctx_B": len(plain),
        "ratio": len(ours) / max(b["iid_bits"] / 8, 1e-9), "enc_s": enc_s, "dec_s": dec_s,
    }


def run_net(net: str, seed: int, q: float) -> dict:
    rows = [measure_layer(n, m, c) for n, m, c in build_masks(net, seed, q)]
    tot = {key: sum(r[key] for r in rows) for key in
           ("n", "k", "iid_B", "rowcol_B", "independence_B", "zstd19_B", "ours_B", "ours_noctx_B")}
    tot["ratio"] = tot["ours_B"] / tot["iid_B"]
    ok = tot["ratio"] <= TARGET_RATIO and all(r["ours_B"] < r["zstd19_B"] for r in rows)
    ok = ok and tot["ours_B"] < tot["zstd19_B"]
    return {"net": net, "seed": seed, "q": q, "layers": rows, "total": tot, "target_met": ok}


def speed_test(n_rows: int = 3000, n_cols: int = 5000, q: float = 0.99) -> dict:
    """15M-entry synthetic rank-structured mask (row x column x |W0| x noise saliency)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
    s = rng.lognormal(0, 1, (n_rows, 1)) * rng.lognormal(0, 1, (1, n_cols)) * np.abs(w)
    s *= rng.lognormal(0, 0.7, s.shape)
    k = int((1 - q) * s.size)
    mask = s >= np.partition(s.ravel(), s.size - k)[s.size - k]
    ctx = np.abs(w)
    out = {"n": mask.size, "k": int(mask.sum()), "iid_B": mask_entropy_bounds(mask)["iid_bits"] / 8}
    for label, c in (("ctx", ctx), ("noctx", None)):
        t = time.perf_counter()
        payload = encode_mask(mask, c)
        enc = time.perf_counter() - t
        dec = []
        for _ in range(3):
            t = time.perf_counter()
            back = decode_mask(payload, mask.shape, int(mask.sum()), c)
            dec.append(time.perf_counter() - t)
        assert np.array_equal(back, mask)
        out[label] = {"bytes": len(payload), "enc_s": enc, "dec_s_min": min(dec), "dec_s": dec}
    return out


def print_net(res: dict) -> None:
    print(f"\n{res['net']}  seed={res['seed']}  q={res['q']}")
    hdr = (f"{'layer':14s} {'n':>7s} {'k':>5s} {'iid B':>8s} {'row/col B':>9s} {'zstd19':>7s}"
           f" {'ours':>6s} {'model':>5s} {'no-ctx':>6s} {'ours/iid':>8s}")
    print(hdr)
    for r in res["layers"] + [dict(res["total"], layer="TOTAL", ours_model="")]:
        print(f"{r['layer']:14s} {r['n']:7d} {r['k']:5d} {r['iid_B']:8.1f} {r['rowcol_B']:9.1f}"
              f" {r['zstd19_B']:7d} {r['ours_B']:6d} {str(r['ours_model']):>5s}"
              f" {r['ours_noctx_B']:6d} {r['ratio']:8.3f}")
    print("target (<= 0.80 x iid total, < zstd-19 per layer and total):",
          "MET" if res["target_met"] else "NOT MET")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["lenet5", "lenet300"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--q", type=float, default=0.99)
    ap.add_argument("--speed", action="store_true", help="also time a 15M-entry mask")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = ap.parse_args(argv)
    results = [run_net(net, s, args.q) for net in args.nets for s in args.seeds]
    speed = speed_test() if args.speed else None
    if args.json:
        print(json.dumps({"results": results, "speed": speed}, indent=1))
    else:
        for res in results:
            print_net(res)
        if speed:
            print(f"\n15M-entry synthetic mask (n={speed['n']}, k={speed['k']}, "
                  f"iid {speed['iid_B']:.0f} B):")
            for label in ("ctx", "noctx"):
                s = speed[label]
                print(f"  {label:6s} {s['bytes']:7d} B  encode {s['enc_s']:.2f} s  "
                      f"decode {s['dec_s_min']:.3f} s (min of 3)")
    return 0 if all(r["target_met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

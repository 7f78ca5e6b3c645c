"""Benchmark: regenerate the frozen weights of VGG16-D (CIFAR-10) with the portable generator.

VGG16-D as in FreezeNet's supplementary Fig. S11: 13 3x3 convs (64, 64, 128, 128, 256 x3, 512 x6)
and Linear(512, 512), Linear(512, 512), Linear(512, 10): 15,239,872 weights in 16 tensors (the
model has 15,255,626 parameters with its 5,258 biases and 10,496 BatchNorm parameters, which are
trained and stored, never regenerated). Each distribution uses its FreezeNet-style scheme:
normal = xavier_normal, uniform = xavier_uniform, pm = pm_sigma.

    PYTHONPATH=src python benchmarks/bench_generator.py [--repeats 15] [--threads 1] [--json]

Times are wall-clock per full regeneration (all 16 tensors, fresh output tensors each time); the
minimum is the least disturbed run, the median shows the noise of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

from fzpack.generator import generate, get_num_threads, init_spec, set_num_threads

CONV_CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                 (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
LINEAR = [(512, 512), (512, 512), (512, 10)]
N_BIASES = sum(c for _, c in CONV_CHANNELS) + sum(o for _, o in LINEAR)
N_BATCHNORM = 2 * (sum(c for _, c in CONV_CHANNELS) + 512 + 512)
SCHEME = {"normal": "xavier_normal", "uniform": "xavier_uniform", "pm": "pm_sigma"}


def vgg16d_weight_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """(state_dict key, shape) of every conv/linear weight of VGG16-D for 10 classes."""
    shapes = [(f"features.{i}.weight", (cout, cin, 3, 3)) for i, (cin, cout) in enumerate(CONV_CHANNELS)]
    shapes += [(f"classifier.{i}.weight", (cout, cin)) for i, (cin, cout) in enumerate(LINEAR)]
    return shapes


def time_dist(dist: str, repeats: int, backend: str | None, seed: int = 1) -> list[float]:
    shapes = vgg16d_weight_shapes()
    specs = [(name, shape, init_spec(SCHEME[dist], shape)) for name, shape in shapes]
    for name, shape, spec in specs:  # warm-up: thread-local buffers, lazy imports
        generate(spec, seed, name, shape, backend=backend)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for name, shape, spec in specs:
            generate(spec, seed, name, shape, backend=backend)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description="fzpack generator throughput on VGG16-D's weights")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="generator threads (default: library default)")
    parser.add_argument("--backend", choices=["numpy", "torch"], default=None, help="default: numpy on CPU")
    parser.add_argument("--dists", default="uniform,normal,pm")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if args.threads is not None:
        set_num_threads(args.threads)
    n_weights = sum(torch.Size(s).numel() for _, s in vgg16d_weight_shapes())
    results = {}
    for dist in args.dists.split(","):
        times = time_dist(dist, args.repeats, args.backend)
        best, median = min(times), statistics.median(times)
        results[dist] = {
            "scheme": SCHEME[dist],
            "seconds_min": best,
            "seconds_median": median,
            "mweights_per_s_min_time": n_weights / best / 1e6,
            "mweights_per_s_median_time": n_weights / median / 1e6,
        }
    info = {
        "model": "VGG16-D (CIFAR-10), conv/linear weights",
        "weights": n_weights,
        "params_total": n_weights + N_BIASES + N_BATCHNORM,
        "threads": get_num_threads(),
        "backend": args.backend or "numpy",
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "results": results,
    }
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"VGG16-D: {n_weights:,} weights ({info['params_total']:,} params incl. biases and BN), "
          f"backend {info['backend']}, {info['threads']} thread(s), {args.repeats} repeats")
    print(f"{'dist':8s} {'scheme':15s} {'min s':>8s} {'median s':>9s} {'M weights/s (min)':>18s} {'(median)':>9s}")
    for dist, r in results.items():
        print(f"{dist:8s} {r['scheme']:15s} {r['seconds_min']:8.4f} {r['seconds_median']:9.4f} "
              f"{r['mweights_per_s_min_time']:18.1f} {r['mweights_per_s_median_time']:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

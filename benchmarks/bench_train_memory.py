"""Training memory and step time: frozen-weight layers vs dense layers with a masked gradient (issue 3).

    python benchmarks/bench_train_memory.py           # VGG16-D, batch 128, CPU; writes docs/results.md
    python benchmarks/bench_train_memory.py --quick   # 2 steps, prints only

Both variants train the same FreezeNet (q = 0.99, same mask) with SGD (momentum 0.9, weight
decay 5e-4). "dense + masked grad" is the usual implementation: full weight Parameters whose
gradients are multiplied by the mask before the step, so gradients and momentum buffers are
dense. "fzpack frozen layers" holds only the K trained entries as Parameters. Each variant runs
in its own process so peak RSS is not shared; inputs are random 32x32 images (CIFAR is not
available here, and the data does not change memory or time).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from common import md_table, write_section


def child(variant: str, steps: int) -> dict:
    from fzpack.families.freezenet import select_frozen as freeze_
    from fzpack.layers import convert_
    from fzpack.models.registry import create_model

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    model = create_model("vgg16-d")
    frozen = freeze_(model, (x, y), rate=0.99, seed=1)
    masks = {n: f.mask for n, f in frozen.items()}
    if variant == "frozen":
        convert_(model, frozen, seed=1)
    params = dict(model.named_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if variant == "dense":
            for n, m in masks.items():
                params[n].grad.mul_(m)
        opt.step()
        times.append(time.perf_counter() - t)
    state = sum(s["momentum_buffer"].numel() * 4 for s in opt.state.values() if "momentum_buffer" in s)
    grads = sum(p.grad.numel() * 4 for p in model.parameters() if p.grad is not None)
    return {"variant": variant, "trainable": sum(p.numel() for p in model.parameters()),
            "param_bytes": sum(p.numel() * 4 for p in model.parameters()), "grad_bytes": grads, "optimizer_bytes": state,
            "step_s": sorted(times)[len(times) // 2], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_training_mib": rss0 / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", choices=["frozen", "dense"])
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    steps = args.steps or (2 if args.quick else 6)
    if args.child:
        print(json.dumps(child(args.child, steps)))
        return
    res = {}
    for v in ("dense", "frozen"):
        out = subprocess.run([sys.executable, __file__, "--child", v, "--steps", str(steps)], capture_output=True, text=True, check=True)
        res[v] = json.loads(out.stdout.strip().splitlines()[-1])
    names = {"dense": "dense + masked grad", "frozen": "fzpack frozen layers"}
    mib = 1 / 2**20
    rows = [[names[v], r["trainable"], r["param_bytes"] * mib, r["grad_bytes"] * mib, r["optimizer_bytes"] * mib,
             r["peak_rss_mib"], r["step_s"] * 1e3] for v, r in res.items()]
    table = md_table(["variant", "parameters", "params MiB", "grads MiB", "optimizer state MiB", "peak RSS MiB", "step ms (median)"], rows)
    print(table)
    if not args.quick:
        write_section("train-memory", "## Training memory and step time: frozen layers vs masked dense gradient (issue 3)\n\n"
                      f"VGG16-D, q = 0.99, batch 128 of 32x32 inputs, SGD momentum 0.9, CPU, {steps} steps per variant in its own "
                      "process (median step time). Peak RSS includes activations, which both variants need in full.\n\n" + table)


if __name__ == "__main__":
    main()

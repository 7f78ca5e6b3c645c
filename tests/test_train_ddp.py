"""Data-parallel training: 2 CPU processes with gloo end with the same model on both ranks."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from fzpack.checkpoint import load_checkpoint
from fzpack.equality import tree_differences
from fzpack.train import TrainConfig
from fzpack.train.build import build_model
from fzpack.train.checkpoints import final_checkpoint
from fzpack.train.data import load_run_data
from fzpack.train.distributed import spawn_local
from fzpack.train.loop import lr_at, make_optimizer


def test_two_gloo_ranks_hold_bit_identical_models(tmp_path):
    cfg = TrainConfig(method="freezenet-wd", arch="lenet5-caffe", dataset="synthetic", synthetic_size=400, epochs=2,
                      device="cpu", progress=False, seed=4)
    r0, r1 = (load_checkpoint(p) for p in spawn_local(cfg, 2, tmp_path))
    # Exact by construction: both ranks apply the same all-reduced gradient to the same weights.
    assert tree_differences(r0, r1) == []  # every tensor, mask, scale and metric, bit for bit
    assert tree_differences(r0, load_checkpoint(tmp_path / "model.pt")) == []  # rank 0 wrote model.pt
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 8  # 360 images, 50 per rank and step


def test_ddp_step_applies_the_mean_of_the_two_half_batch_gradients(tmp_path):
    """One DDP step == one step on (g_0 + g_1) / 2, bit for bit, and the halves are the 100-image batch.

    Rank r's gradient is the mean over its 50 images, computed by the same kernels as here when
    this process uses one thread like the ranks (some CPU kernels split a sum over threads);
    DDP halves it (exact) and gloo adds two numbers (commutative), so the reduced gradient is
    ``(g_0 + g_1) / 2`` exactly. That equals the single process's 100-image mean mathematically
    but not in float32: the summation order differs, and after two epochs the two runs drift
    apart by up to 3e-3 on some CPUs, so the single-process run is no reference to compare to.
    A missing all-reduce, a sum instead of a mean, a wrong shard or a wrong mask all fail here.
    """
    cfg = TrainConfig(method="freezenet-wd", arch="lenet5-caffe", dataset="synthetic", synthetic_size=400, epochs=1,
                      max_steps=1, device="cpu", progress=False, seed=4)
    r0, r1 = (load_checkpoint(p) for p in spawn_local(cfg, 2, tmp_path))
    assert tree_differences(r0, r1) == []
    run, cpu = cfg.validate().resolve(), torch.device("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_run_data(run)
        built = build_model(run, data.info, data.saliency_batch(cpu))  # same masks as the ranks': same kernels
        model = built.model.train()
        full = data.train_batches(0, 1, cpu)
        full.set_epoch(0)
        fx, fy = next(iter(full))
        grads = []
        for rank in (0, 1):
            shard = data.train_batches(rank, 2, cpu)
            shard.set_epoch(0)
            x, y = next(iter(shard))
            assert torch.equal(x, fx[rank::2]) and torch.equal(y, fy[rank::2])  # the two halves of the batch
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            grads.append([p.grad for p in model.parameters()])
        for p, g0, g1 in zip(model.parameters(), *grads):
            p.grad = (g0 + g1) / 2
        opt = make_optimizer(model.parameters(), run)
        lr = lr_at(run, 0, len(shard), run.dataset)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        built.family.after_step(model, built.state, lr=lr, weight_decay=run.weight_decay, momentum=run.momentum)
    finally:
        torch.set_num_threads(threads)
    expected = final_checkpoint(model, built, run, {})
    assert tree_differences(expected["state_dict"], r0["state_dict"]) == []
    assert tree_differences(expected["fzpack"]["tensors"], r0["fzpack"]["tensors"]) == []  # masks and WD scale


def test_ddp_reduces_only_trained_entries_and_skips_frozen_buffers(tmp_path):
    import torch.distributed as dist

    from fzpack.train.data import load_run_data
    from fzpack.train.distributed import DistContext, wrap_ddp
    from fzpack.train.build import build_model

    cfg = TrainConfig(dataset="synthetic", synthetic_size=200, device="cpu", freeze_rate=0.99)
    data = load_run_data(cfg)
    built = build_model(cfg, data.info, data.saliency_batch("cpu"))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        net = wrap_ddp(built.model, DistContext(0, 2, 0, torch.device("cpu"), "gloo"))
        assert sum(p.numel() for p in net.parameters()) == built.info["trained_parameters"] == 4305 + 580
        ignored = {n for n in net.parameters_to_ignore}
        assert ignored == {f"{m}.frozen_weight.{b}" for m in ("conv1", "conv2", "fc1", "fc2") for b in ("frozen", "index")}
    finally:
        dist.destroy_process_group()

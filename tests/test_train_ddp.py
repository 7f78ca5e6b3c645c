"""Data-parallel training: 2 CPU processes with gloo end with the same model on both ranks."""

from __future__ import annotations

import torch

from fzpack.checkpoint import load_checkpoint
from fzpack.equality import tree_differences
from fzpack.train import TrainConfig, train
from fzpack.train.distributed import spawn_local


def test_two_gloo_ranks_hold_identical_models_close_to_single_process(tmp_path):
    cfg = TrainConfig(method="freezenet-wd", arch="lenet5-caffe", dataset="synthetic", synthetic_size=400, epochs=2,
                      device="cpu", progress=False, seed=4)
    r0, r1 = (load_checkpoint(p) for p in spawn_local(cfg, 2, tmp_path))
    assert tree_differences(r0, r1) == []  # every tensor, mask, scale and metric, bit for bit
    assert tree_differences(r0, load_checkpoint(tmp_path / "model.pt")) == []  # rank 0 wrote model.pt
    assert (tmp_path / "metrics.json").exists()
    # Two ranks x 50 images == one process x 100 images up to float summation order:
    # DDP averages the two half-batch gradients, which is the full-batch mean.
    single = train(cfg).checkpoint
    for name, t in single["fzpack"]["tensors"].items():
        assert torch.equal(t["mask"], r0["fzpack"]["tensors"][name]["mask"])
    for name, w in single["state_dict"].items():
        torch.testing.assert_close(r0["state_dict"][name], w, rtol=1e-3, atol=1e-4)  # measured: <= 3e-5


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

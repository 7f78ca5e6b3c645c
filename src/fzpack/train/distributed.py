"""torch.distributed data parallelism for the trainer: torchrun, gloo on CPU, nccl on CUDA.

A converted FreezeNet has only its K trained entries (plus biases and BatchNorm) as
Parameters, so DistributedDataParallel all-reduces exactly those: the gradient traffic of a
step is (1 - q_beta) of a dense model's. The frozen part is a buffer regenerated from the seed
on every rank; it is excluded from DDP's buffer broadcast (``_ddp_params_and_buffers_to_ignore``),
which would otherwise send the whole dense weight from rank 0 before every forward pass.
BatchNorm running statistics are still broadcast from rank 0, so all ranks hold the same model.

Launch with ``torchrun --nproc_per_node N -m fzpack_cli.main train ...`` (or the ``fzpack``
script path); `setup` reads torchrun's environment. `spawn_local` starts N local processes
without torchrun (what the tests use on CPU).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from fzpack.layers import frozen_weights
from fzpack.train.config import TrainConfig, TrainError

__all__ = ["DistContext", "resolve_device", "setup", "teardown", "wrap_ddp", "spawn_local"]


@dataclass
class DistContext:
    """Where this process sits in the job: rank, world size, its device, the backend.

    A single-process run is ``DistContext()`` with ``world_size == 1`` and no process group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum ``values`` over all ranks (a no-op for one process); returns the summed tensor."""
        if self.distributed:
            # nccl reduces device tensors only; gloo takes CPU tensors.
            t = values.to(self.device)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            return t.cpu()
        return values

    def barrier(self) -> None:
        """Wait for every rank (a no-op for one process)."""
        if self.distributed:
            dist.barrier()


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda`` is checked.

    Args:
        pref: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        local_rank: this process's GPU index on its node (torchrun's LOCAL_RANK).

    Returns:
        The device to train on.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if pref == "cpu":
        return torch.device("cpu")
    if pref == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TrainError(f"device {pref!r} requested but CUDA is not available (this torch: {torch.__version__})")
    if pref.startswith("cuda:"):
        return torch.device(pref)
    return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))


def setup(device_pref: str = "auto") -> DistContext:
    """Join the torchrun job described by the environment, if any.

    With ``WORLD_SIZE`` > 1 (set by torchrun) this initialises the default process group:
    nccl when the device is CUDA, gloo otherwise. A group that the caller already initialised
    is used as it is. Without those variables the run is single-process.

    Args:
        device_pref: the config's ``device``.

    Returns:
        The `DistContext` of this process; pass it to `teardown` at the end.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = resolve_device(device_pref, local)
        return DistContext(rank, world, local, device, dist.get_backend(), owns_group=False)
    if world <= 1:
        return DistContext(device=resolve_device(device_pref, 0))
    if not dist.is_available():
        raise TrainError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank, world, local, device, backend, owns_group=True)


def teardown(ctx: DistContext) -> None:
    """Destroy the process group if `setup` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Wrap ``model`` in DDP for a multi-process run; return it unchanged otherwise.

    The frozen buffers (and their constant index) are identical on every rank by construction
    (regenerated from the seed), so they are excluded from DDP's initial and per-step buffer
    broadcast. DDP's constructor still broadcasts the parameters from rank 0 and checks that
    every rank has the same parameter shapes, i.e. the same masks.

    Args:
        model: the converted (or plain) model, already on ``ctx.device``.
        ctx: this process's context.

    Returns:
        The model to call in the training step (``.module`` is the original when wrapped).
    """
    if not ctx.distributed:
        return model
    ignore = []
    modules = {id(m): n for n, m in model.named_modules()}
    for fw in frozen_weights(model).values():
        base = modules[id(fw)]
        ignore += [f"{base}.frozen", f"{base}.index"]
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignore)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # Default buffer sync: BatchNorm statistics go from rank 0 to all ranks before each forward.
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn_worker(rank: int, world: int, port: int, config: dict[str, Any], workdir: str, threads: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)  # a fresh process of ours: world x threads <= the cores
    from fzpack.checkpoint import save_checkpoint
    from fzpack.train.loop import train

    out = Path(workdir)
    result = train(TrainConfig.from_dict(config), output=out / "model.pt")
    save_checkpoint(result.checkpoint, out / f"rank{rank}.pt")


def spawn_local(config: TrainConfig, world_size: int, workdir: str | os.PathLike, *, threads: int = 1) -> list[Path]:
    """Run one data-parallel job as ``world_size`` local processes (gloo on CPU), like torchrun.

    Rank 0 writes ``model.pt`` and ``metrics.json`` into ``workdir`` as a normal run does, and
    every rank also saves its own final checkpoint as ``rank<r>.pt`` so that callers can check
    that all ranks ended with the same model.

    Args:
        config: the run's config (``device`` should be ``cpu`` unless each rank has a GPU).
        world_size: number of processes.
        workdir: output directory (created).
        threads: torch intra-op threads per process.

    Returns:
        The per-rank checkpoint paths, ordered by rank.

    Example:
        >>> paths = spawn_local(TrainConfig(dataset="synthetic", device="cpu", epochs=1), 2, "ddp-run")
    """
    import torch.multiprocessing as mp

    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_spawn_worker, args=(world_size, _free_port(), config.to_dict(), str(out), threads), nprocs=world_size, join=True)
    return [out / f"rank{r}.pt" for r in range(world_size)]

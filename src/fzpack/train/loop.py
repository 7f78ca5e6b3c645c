"""The training loop: the family's optimiser on the trained entries, validation, early stopping, checkpoints.

`train` runs one configuration end to end (FreezeNet paper section 4 and supplementary S1.1;
the other families' papers for their defaults, `fzpack.families.TrainDefaults`):

1. load the data, split off the validation set (9/1 by default), draw the saliency batch;
2. build the model of the method (`fzpack.train.build`: the family's ``transform_``): only
   trained entries (and alphas), biases and BatchNorm are Parameters, so momentum and weight
   decay touch those only ("weight decay on the trainable parameters only", section 4); the
   family's hooks run after every step (freezenet-wd decays its frozen part, section 4.2) and
   add to the loss (LC: L1 on the 1x1 convs);
3. per epoch: SGD (optionally Nesterov) or Adam at the scheduled lr (step drops, cosine, or
   constant), then the validation accuracy; the best epoch's weights are kept (the paper's
   early stopping) and ``patience`` epochs without improvement end the run;
4. the family's ``finalize_`` (LC: 1x1 magnitude pruning), the test accuracy of the kept
   weights, then ``model.pt`` (checkpoint convention) and ``metrics.json``; a resume
   checkpoint ``model.resume.pt`` is written after every epoch.

Determinism: data order and augmentation depend on (data seed, epoch) only, init and mask on
the seed only, and the learning rate is a pure function of the step, so a run resumed from its
epoch checkpoint continues bit-identically on the CPU. The global RNG is never used.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fzpack.checkpoint import save_checkpoint
from fzpack.progress import Progress
from fzpack.train.build import BuiltModel
from fzpack.train.checkpoints import LoopState, final_checkpoint, load_resume, resume_path, save_resume
from fzpack.train.config import TrainConfig, TrainError
from fzpack.train.data import RunData, load_run_data
from fzpack.train.distributed import DistContext, setup, teardown, wrap_ddp
from fzpack.train.build import build_model
from fzpack.train.metrics import METRICS_VERSION, evaluate, write_metrics

__all__ = ["TrainResult", "lr_at", "train", "paper_lr_drop_every"]

Log = Callable[[str], None]


@dataclass
class TrainResult:
    """What `train` returns (on every rank).

    Attributes:
        checkpoint: the convention checkpoint of the final model (what ``model.pt`` holds).
        metrics: the ``metrics.json`` record.
        model: the trained module (converted or plain) on the training device, in eval mode.
        output, metrics_path, resume_file: the files written (None when not written).
    """

    checkpoint: dict[str, Any]
    metrics: dict[str, Any]
    model: nn.Module
    output: Path | None = None
    metrics_path: Path | None = None
    resume_file: Path | None = None


def paper_lr_drop_every(dataset: str) -> int:
    """Steps between learning-rate drops in FreezeNet S1.1: 30k for CIFAR, 25k otherwise (MNIST)."""
    return 30_000 if dataset.startswith("cifar") else 25_000


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int, dataset: str) -> float:
    """The learning rate of optimizer step ``step`` (0-based): a pure function, so resumes are exact.

    Args:
        config: lr, lr_gamma, lr_drop_every / lr_drop_epochs / lr_drop_steps.
        step: global step index.
        steps_per_epoch: batches per epoch on one rank (converts epoch drop points to steps).
        dataset: data set name (for the paper's default drop interval).

    Returns:
        step schedule: ``lr * gamma ** (number of drop points <= step)``; cosine:
        ``lr * (1 + cos(pi * step / total)) / 2`` over ``total = epochs * steps_per_epoch`` steps
        (or ``max_steps`` when smaller); constant: ``lr``.

    Example:
        >>> lr_at(TrainConfig(lr=0.1, lr_drop_epochs=(2,)), 2 * 540, 540, "mnist")
        0.010000000000000002
    """
    lr = config.lr if config.lr is not None else 0.1
    schedule = config.lr_schedule or "step"
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        total = config.epochs * steps_per_epoch
        if config.max_steps is not None:
            total = min(total, config.max_steps)
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    if config.lr_drop_epochs or config.lr_drop_steps:
        points = [e * steps_per_epoch for e in config.lr_drop_epochs] + list(config.lr_drop_steps)
        drops = sum(1 for p in points if p <= step)
    else:
        every = paper_lr_drop_every(dataset) if config.lr_drop_every is None else config.lr_drop_every
        drops = step // every if every else 0
    return lr * config.lr_gamma ** drops


def make_optimizer(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optionally Nesterov) or Adam over ``params`` with the run's resolved settings.

    Weight decay is the optimizers' own (L2 added to the gradient), on exactly the parameters
    given: the trained entries, alphas, biases and BatchNorm, never the frozen part.
    """
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=bool(config.nesterov))


def _amp(config: TrainConfig, device: torch.device, log: Log | None) -> tuple[Any, Any]:
    """(autocast context factory, GradScaler or None). AMP exists on CUDA only."""
    if not config.amp:
        return contextlib.nullcontext, None
    if device.type != "cuda":
        if log:
            log("note: --amp needs CUDA; training in float32 on the CPU")
        return contextlib.nullcontext, None
    dtype = torch.float16 if config.amp_dtype == "float16" else torch.bfloat16
    # float16 needs loss scaling against gradient underflow; bfloat16 has float32's range.
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def _epoch(net: nn.Module, model: nn.Module, opt: torch.optim.Optimizer, scaler: Any, autocast: Any,
           batches: Any, config: TrainConfig, state: LoopState, steps_per_epoch: int, built: BuiltModel,
           progress: Progress, ctx: DistContext) -> dict[str, float]:
    """One epoch of training; stops early at ``max_steps``. Returns mean loss and accuracy (all ranks), steps."""
    family, fstate = built.family, built.state
    net.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=batches.device)
    correct = torch.zeros((), dtype=torch.int64, device=batches.device)
    seen = steps = 0
    bar = progress.bar(batches, total=len(batches), desc=f"epoch {state.epoch + 1}/{config.epochs}")
    for x, y in bar:
        if config.max_steps is not None and state.step >= config.max_steps:
            break
        lr = lr_at(config, state.step, steps_per_epoch, config.dataset)
        for group in opt.param_groups:
            group["lr"] = lr
        with autocast():
            out = net(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=config.label_smoothing or 0.0)
            penalty = family.regularizer(model, fstate)
            objective = loss if penalty is None else loss + penalty
        opt.zero_grad(set_to_none=True)
        stepped = True
        if scaler is not None:
            scaler.scale(objective).backward()
            before = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            # A step with inf/nan gradients is skipped and the scale lowered: skip the decay too,
            # so the frozen part sees exactly the steps the optimizer took.
            stepped = scaler.get_scale() >= before
        else:
            objective.backward()
            opt.step()
        if stepped:
            family.after_step(model, fstate, lr=lr, weight_decay=config.weight_decay, momentum=config.momentum)
        state.step += 1
        steps += 1
        n = y.shape[0]
        seen += n
        loss_sum += loss.detach().double() * n
        correct += (out.detach().argmax(1) == y).sum()
        if progress.shows_bar and (steps % 20 == 0 or steps == len(batches)):  # .item() syncs a GPU: not every step
            bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{int(correct) / seen:.4f}", lr=f"{lr:g}")
    bar.close()
    # The bar shows rank 0's shard; the epoch's record covers every rank's samples.
    loss_total, correct_total, seen_total = ctx.all_reduce_sum(
        torch.stack([loss_sum.cpu(), correct.cpu().double(), torch.tensor(float(seen), dtype=torch.float64)])).tolist()
    return {"train_loss": loss_total / seen_total if seen_total else 0.0,
            "train_accuracy": correct_total / seen_total if seen_total else 0.0, "steps": steps}


def _metadata(config: TrainConfig, data: RunData, extra: dict[str, Any]) -> dict[str, Any]:
    """Flat primitives for the checkpoint's ``fzpack.metadata`` (formats/checkpoint-v1.md).

    Kept short on purpose: it is stored in every `.fzp` header. q and the init scheme are
    implied by the masks and init specs; the full record is ``metrics.json``.
    """
    meta: dict[str, Any] = {"dataset": data.info.name, "data_seed": data.data_seed}
    if data.info.name == "synthetic":  # which synthetic task: `fzpack evaluate` needs it
        meta.update(synthetic_seed=config.synthetic_seed, synthetic_size=len(data.train_x) + len(data.val_x))
    meta.update(extra)
    return meta


def train(config: TrainConfig, output: str | os.PathLike | None = None, *, resume: bool = False,
          metrics_path: str | os.PathLike | None = None, log: Log | None = None) -> TrainResult:
    """Train one configuration; write ``model.pt``, ``metrics.json`` and the resume checkpoint.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; it joins the process
    group, trains its shard with DDP and only rank 0 writes files.

    Args:
        config: the run (`TrainConfig`).
        output: ``model.pt`` path; None keeps everything in memory (no resume file either).
        resume: continue from ``<output stem>.resume.pt`` when it exists (else start afresh).
        metrics_path: where ``metrics.json`` goes (default: beside ``output``).
        log: receives one line per epoch and notes (rank 0 only). None: those lines go to stderr
            when ``config.progress`` resolves to plain lines (not a terminal), else nowhere.

    Returns:
        A `TrainResult` with the checkpoint, the metrics and the trained model.

    Example:
        >>> cfg = TrainConfig(method="freezenet", arch="lenet5-caffe", dataset="fashion-mnist",
        ...                   freeze_rate=0.99, epochs=2, seed=2026)
        >>> result = train(cfg, "run/model.pt")
        >>> result.metrics["test_accuracy"]
    """
    config = config.validate().resolve()  # every None option now holds the family's paper value
    if resume and output is None:
        raise TrainError("resume needs an output path (the resume checkpoint lives beside it)")
    ctx = setup(config.device)
    try:
        return _train(config, ctx, Path(output) if output is not None else None, resume,
                      Path(metrics_path) if metrics_path is not None else None, log if ctx.is_main else None)
    finally:
        teardown(ctx)


def _train(config: TrainConfig, ctx: DistContext, output: Path | None, resume: bool, metrics_path: Path | None,
           log: Log | None) -> TrainResult:
    t0 = time.perf_counter()
    # Rank 0 only: a bar on a terminal; elsewhere the epoch lines are the progress (no \r frames).
    progress = Progress(config.progress if ctx.is_main else False)
    if log is None and progress.shows_lines:
        log = progress.line
    if output is not None and ctx.is_main:
        output.parent.mkdir(parents=True, exist_ok=True)
    data = load_run_data(config)
    rfile = resume_path(output) if output is not None else None
    resumed = load_resume(rfile, config) if resume and rfile is not None and rfile.exists() else None
    if resume and resumed is None and log:
        log(f"note: no resume checkpoint at {rfile}; starting from scratch")
    if resumed is not None:
        built, state = resumed.built, resumed.state
    else:
        mask_device = torch.device("cpu") if config.mask_device == "cpu" else ctx.device
        built, state = build_model(config, data.info, data.saliency_batch(mask_device)), LoopState()
    model = built.model.to(ctx.device)
    net = wrap_ddp(model, ctx)
    # Weight decay on every Parameter = on the trained entries, biases and BN only (section 4).
    opt = make_optimizer(model.parameters(), config)
    autocast, scaler = _amp(config, ctx.device, log)
    if resumed is not None:
        opt.load_state_dict(resumed.optimizer)
        if scaler is not None and resumed.scaler is not None:
            scaler.load_state_dict(resumed.scaler)
        if log:
            log(f"resumed from {rfile} after epoch {state.epoch} (step {state.step})")
    batches = data.train_batches(ctx.rank, ctx.world_size, ctx.device)
    steps_per_epoch = len(batches)
    has_val = len(data.val_x) > 0
    eval_kw = dict(mean=data.info.mean, std=data.info.std, batch_size=config.eval_batch_size, device=ctx.device,
                   rank=ctx.rank, world_size=ctx.world_size, all_reduce=ctx.all_reduce_sum)
    prior = state.elapsed  # wall time of the earlier segments of a resumed run

    while state.epoch < config.epochs and not state.stopped_early:
        if config.max_steps is not None and state.step >= config.max_steps:
            break
        te = time.perf_counter()
        batches.set_epoch(state.epoch)
        stats = _epoch(net, model, opt, scaler, autocast, batches, config, state, steps_per_epoch, built,
                       progress=progress, ctx=ctx)
        state.epoch += 1
        row: dict[str, Any] = {"epoch": state.epoch, **stats,
                               "lr": lr_at(config, max(state.step - 1, 0), steps_per_epoch, config.dataset)}
        if has_val:
            val = evaluate(model, data.val_x, data.val_y, **eval_kw)
            row["val_accuracy"], row["val_loss"] = val.accuracy, val.loss
            if val.accuracy > state.best_val:
                state.best_val, state.best_epoch, state.bad_epochs = val.accuracy, state.epoch, 0
                if config.keep_best:
                    state.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                state.bad_epochs += 1
                state.stopped_early = config.patience is not None and state.bad_epochs >= config.patience
        row["seconds"] = time.perf_counter() - te
        state.history.append(row)
        if not math.isfinite(row["train_loss"]):
            state.stopped_early = True  # a NaN/inf loss never recovers: stop spending time on the run
        if log:
            val_txt = f" | val {row['val_accuracy']:.4f} (best {state.best_val:.4f} @ {state.best_epoch})" if has_val else ""
            log(f"epoch {state.epoch}/{config.epochs}: loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"
                f"{val_txt} | lr {row['lr']:g} | {row['steps']} steps {row['seconds']:.1f} s")
        if rfile is not None and ctx.is_main and config.save_every and state.epoch % config.save_every == 0:
            state.elapsed = prior + time.perf_counter() - t0
            save_resume(rfile, model, built, config, opt, scaler, state, _metadata(config, data, {}))
        if state.stopped_early and log:
            log("stopped: the training loss is not finite (diverged)" if not math.isfinite(row["train_loss"])
                else f"early stop: no better validation accuracy for {config.patience} epochs")

    if config.keep_best and state.best_state is not None:
        model.load_state_dict(state.best_state)
    built.family.finalize_(model, built.state)  # e.g. LC's 1x1 magnitude pruning, after training (no fine-tuning)
    model.eval()
    test = evaluate(model, data.test_x, data.test_y, **eval_kw)
    wall = prior + time.perf_counter() - t0
    info = built.info
    results = {"test_accuracy": test.accuracy, "test_loss": test.loss,
               "val_accuracy": state.best_val if state.best_epoch is not None else None, "best_epoch": state.best_epoch,
               "epochs_run": state.epoch, "steps": state.step}
    meta_results = {k: results[k] for k in ("test_accuracy", "val_accuracy", "best_epoch", "epochs_run", "steps")}
    ckpt = final_checkpoint(model, built, config, _metadata(config, data, meta_results))
    metrics = {
        "version": METRICS_VERSION, "method": config.method, "family": built.family.name,
        "family_config": built.state.config.to_dict(), "arch": built.arch, "dataset": data.info.name,
        **results,
        "q": info.get("q"), "q_beta": info.get("q_beta"), "trained_weights": info.get("trained_weights"),
        "total_weights": info.get("total_weights"), "trained_parameters": info.get("trained_parameters"),
        "total_parameters": info.get("total_parameters"),
        "stopped_early": state.stopped_early,
        "diverged": bool(state.history) and not math.isfinite(state.history[-1]["train_loss"]), "kept_best": bool(config.keep_best and state.best_state is not None),
        "wall_time_s": wall, "device": str(ctx.device), "world_size": ctx.world_size,
        "seeds": {"seed": config.seed, "data_seed": data.data_seed, "mask_seed": info.get("mask_seed", config.seed),
                  "synthetic_seed": config.synthetic_seed if data.info.name == "synthetic" else None},
        "sizes": {"train": len(data.train_x), "val": len(data.val_x), "test": len(data.test_x),
                  "batch_size": data.batch_size, "steps_per_epoch": steps_per_epoch},
        "config": config.to_dict(), "history": state.history,
    }
    mpath = None
    if output is not None and ctx.is_main:
        save_checkpoint(ckpt, output)
        mpath = metrics_path or output.with_name("metrics.json")
        write_metrics(mpath, metrics)
    ctx.barrier()  # no rank leaves (and tears the group down) before rank 0 has written
    return TrainResult(ckpt, metrics, model, output if ctx.is_main else None, mpath,
                       rfile if rfile is not None and rfile.exists() else None)

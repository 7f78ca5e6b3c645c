"""`fzpack train`."""

from __future__ import annotations

import json

import click

from fzpack.data.datasets import list_datasets
from fzpack.families import get_family, list_methods
from fzpack.models.registry import list_models
from fzpack.progress import setting_from_flag
from fzpack.train.config import INIT_SCHEMES, LR_SCHEDULES, OPTIMIZERS, TrainConfig, TrainError
from fzpack.train.loop import train
from fzpack_cli.app import cli, current_file, print_json


def _ints(text: str | None, what: str) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise TrainError(f"{what} must be comma-separated integers, got {text!r}") from None


def _arch_config(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise TrainError(f"--arch-config must be a JSON object: {e}") from None
    if not isinstance(value, dict):
        raise TrainError("--arch-config must be a JSON object, e.g. '{\"conv_relu\": true}'")
    return value


def _method_help() -> str:
    return "; ".join(f"{m}: {get_family(m).help.get(m, '')}" for m in list_methods())


@cli.command("train")
@click.option("--method", type=click.Choice(list_methods()), default="freezenet", show_default=True, help=_method_help())
@click.option("--arch", type=click.Choice(list_models()), default="lenet5-caffe", show_default=True)
@click.option("--arch-config", help="JSON object of constructor overrides, e.g. '{\"conv_relu\": true}'.")
@click.option("--dataset", type=click.Choice(list_datasets()), default="fashion-mnist", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Directory of the data files.")
@click.option("--synthetic-size", type=click.IntRange(1), help="Training images of the synthetic data set.")
@click.option("--freeze-rate", "-q", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.99, show_default=True,
              help="FreezeNet family: freezing rate q, the fraction of Linear/Conv weights not trained.")
@click.option("--density", type=click.FloatRange(0.0, 1.0, min_open=True),
              help="dctps / sparse-epl: fraction of Linear/Conv weights that train (default: 1 - q).")
@click.option("--allocation", type=click.Choice(["epl", "epf"]), default="epl", show_default=True,
              help="dctps / sparse-epl: trainable entries equal per layer or equal per filter (row).")
@click.option("--share", type=click.Choice(["none", "global", "recycled"]), default="none", show_default=True,
              help="lc-frozen: weight sharing of the frozen spatial convs (one bank for all layers; recycled: 1/R of it, tiled).")
@click.option("--bank-fraction", type=click.IntRange(1), default=16, show_default=True, metavar="R",
              help="lc-frozen --share recycled: the bank is 1/R of the largest spatial layer.")
@click.option("--l1", type=click.FloatRange(0.0), default=0.0, show_default=True,
              help="LC: L1 penalty lambda on the 1x1 convs (the paper: 5e-5).")
@click.option("--prune-1x1", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True, metavar="RHO",
              help="LC: prune this fraction of the 1x1 weights by global magnitude after training (stored as mask + values).")
@click.option("--init", type=click.Choice(INIT_SCHEMES), help="Init scheme (default: the family's; FreezeNet: xavier_normal).")
@click.option("--reinit", type=click.Choice(INIT_SCHEMES), help="freezenet-reinit: scheme B (default: --init).")
@click.option("--epochs", type=click.IntRange(0), default=250, show_default=True)
@click.option("--max-steps", type=click.IntRange(0), help="Stop after this many optimizer steps.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Init, mask and checkpoint seed.")
@click.option("--data-seed", type=click.IntRange(0, 2**32 - 1), help="Split/order seed (default: derived from --seed).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", is_flag=True, help="Mixed precision (CUDA only).")
@click.option("--amp-dtype", type=click.Choice(["float16", "bfloat16"]), default="float16", show_default=True)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Default: the family's (FreezeNet, LC: sgd; DCTpS: adam).")
@click.option("--lr", type=click.FloatRange(0.0), help="Default: the family's (FreezeNet 0.1, DCTpS 1e-3, LC 1e-2).")
@click.option("--momentum", type=click.FloatRange(0.0), help="SGD momentum (default: 0.9).")
@click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum (default: the family's; LC: on).")
@click.option("--weight-decay", type=click.FloatRange(0.0), help="On trained parameters only (default: the family's).")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), help="Default: the family's (FreezeNet: step, DCTpS: constant, LC: cosine).")
@click.option("--label-smoothing", type=click.FloatRange(0.0, 1.0, max_open=True), help="Default: the family's (LC: 0.1).")
@click.option("--lr-drop-epochs", help="Divide lr by 10 at these epochs, e.g. 30,60,80.")
@click.option("--lr-drop-steps", help="Divide lr by 10 at these steps (default: every 25k steps, 30k for CIFAR).")
@click.option("--batch-size", type=click.IntRange(1), help="Global batch size (default: 100, CIFAR 128).")
@click.option("--val-split", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True,
              help="Validation fraction for early stopping: 0.1 = 9/1, 0.05 = 19/1, 0 = none.")
@click.option("--patience", type=click.IntRange(1), help="Stop after N epochs without a better validation accuracy.")
@click.option("--augment/--no-augment", default=None, help="Flips + 4-pixel shifts (default: on for CIFAR).")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT's .resume.pt checkpoint if present.")
@click.option("--progress/--no-progress", default=None,
              help="A progress bar, or one plain line per epoch (default: the bar when stderr is a terminal).")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), help="metrics.json path (default: beside -o).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON (no bar, no epoch lines).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="model.pt", show_default=True,
              help="The trained model (checkpoint convention; `fzpack compress` takes it).")
def train_cmd(method: str, arch: str, arch_config: str | None, dataset: str, data_dir: str | None, synthetic_size: int | None,
              freeze_rate: float, density: float | None, allocation: str, share: str, bank_fraction: int, l1: float,
              prune_1x1: float, init: str | None, reinit: str | None, epochs: int, max_steps: int | None, seed: int,
              data_seed: int | None, device: str, amp: bool, amp_dtype: str, optimizer: str | None, lr: float | None,
              momentum: float | None, nesterov: bool | None, weight_decay: float | None, lr_schedule: str | None,
              label_smoothing: float | None,
              lr_drop_epochs: str | None, lr_drop_steps: str | None, batch_size: int | None, val_split: float,
              patience: int | None, augment: bool | None, resume: bool, progress: bool | None, metrics_path: str | None,
              as_json: bool, output: str) -> None:
    """Train a FreezeNet, DCTpS or LC network (or a baseline) and save it for `fzpack compress`.

    Each family brings its paper's optimiser settings as defaults: FreezeNet S1.1 (SGD momentum
    0.9, lr 0.1 / 10 every 25k steps, 30k for CIFAR, wd 5e-4, batch 100 / 128), DCTpS Table 4
    (Adam lr 1e-3, wd 5e-4, batch 128), LC appendix C (SGD Nesterov 0.9, lr 1e-2 cosine, wd 1e-2,
    batch 256, label smoothing 0.1); any option given overrides them. Weight decay touches
    trained parameters only; a 9/1 train/validation split picks the best epoch. Writes OUTPUT,
    metrics.json beside it, and OUTPUT.resume.pt after every epoch. Multi-process: torchrun.

    \b
    Examples:
      fzpack train --method freezenet --arch lenet5-caffe --dataset fashion-mnist -q 0.99 --epochs 2 -o run/model.pt
      fzpack train --method dctps --arch lenet5-caffe --density 0.001 --epochs 2 -o dctps/model.pt
      fzpack train --method lc-frozen --arch lcresnet-20-16x8 --share recycled --bank-fraction 16 -o lc/model.pt
      fzpack compress run/model.pt && fzpack evaluate run/model.fzp
      fzpack train --method snip --dataset synthetic --epochs 3 --json -o snip.pt
      fzpack train --dataset cifar10 --data-dir ~/cifar --arch vgg16-d --device cuda --amp -o vgg.pt
      fzpack train ... --epochs 20 --resume -o run/model.pt        # continue an interrupted run
      torchrun --nproc_per_node 2 -m fzpack_cli.main train --device cpu --epochs 2 -o ddp.pt
    """
    current_file(output)
    config = TrainConfig(
        method=method, arch=arch, arch_config=_arch_config(arch_config), dataset=dataset, data_dir=data_dir,
        synthetic_size=synthetic_size, freeze_rate=freeze_rate, density=density, allocation=allocation, share=share,
        bank_fraction=bank_fraction, l1=l1, prune_1x1=prune_1x1, init=init, reinit=reinit, seed=seed, data_seed=data_seed,
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
        nesterov=nesterov, weight_decay=weight_decay, lr_schedule=lr_schedule, label_smoothing=label_smoothing,
        lr_drop_epochs=_ints(lr_drop_epochs, "--lr-drop-epochs"), lr_drop_steps=_ints(lr_drop_steps, "--lr-drop-steps"),
        val_split=val_split, patience=patience, augment=augment, device=device, amp=amp, amp_dtype=amp_dtype,
        progress=False if as_json else setting_from_flag(progress),
    )
    log = None if as_json else (lambda line: click.echo(line, err=True))
    r = train(config, output, resume=resume, metrics_path=metrics_path, log=log)
    if r.output is None:  # not rank 0 of a distributed run
        return
    m = r.metrics
    if as_json:
        print_json({k: v for k, v in m.items() if k != "history"} | {"output": str(r.output), "metrics_path": str(r.metrics_path)})
        return
    q = f", q = {m['q']:.4f} (q_beta {m['q_beta']:.4f})" if m.get("q") else ""
    click.echo(f"{m['method']} {m['arch']['name']} on {m['dataset']}{q}: {m['trained_parameters']:,} of "
               f"{m['total_parameters']:,} parameters trained")
    val = f", val {m['val_accuracy']:.4f} (best epoch {m['best_epoch']})" if m["val_accuracy"] is not None else ""
    click.echo(f"test accuracy {m['test_accuracy']:.4f}{val}; {m['epochs_run']} epochs, {m['steps']} steps, "
               f"{m['wall_time_s']:.1f} s on {m['device']}" + (f" x {m['world_size']}" if m["world_size"] > 1 else ""))
    click.echo(f"files: {r.output}, {r.metrics_path}" + (f", {r.resume_file}" if r.resume_file else ""))

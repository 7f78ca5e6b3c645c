"""`fzpack train`."""

from __future__ import annotations

import json

import click

from fzpack.data.datasets import list_datasets
from fzpack.models.registry import list_models
from fzpack.train.config import INIT_SCHEMES, METHODS, TrainConfig, TrainError
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


@cli.command("train")
@click.option("--method", type=click.Choice(METHODS), default="freezenet", show_default=True,
              help="freezenet: frozen at init; freezenet-wd: + weight decay on frozen weights; freezenet-reinit: "
                   "Algorithm S1; snip: pruned to zero; random-mask: random mask, same k; dense: baseline.")
@click.option("--arch", type=click.Choice(list_models()), default="lenet5-caffe", show_default=True)
@click.option("--arch-config", help="JSON object of constructor overrides, e.g. '{\"conv_relu\": true}'.")
@click.option("--dataset", type=click.Choice(list_datasets()), default="fashion-mnist", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Directory of the data files.")
@click.option("--synthetic-size", type=click.IntRange(1), help="Training images of the synthetic data set.")
@click.option("--freeze-rate", "-q", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.99, show_default=True,
              help="Freezing rate q: fraction of Linear/Conv weights not trained.")
@click.option("--init", type=click.Choice(INIT_SCHEMES), default="xavier_normal", show_default=True)
@click.option("--reinit", type=click.Choice(INIT_SCHEMES), help="freezenet-reinit: scheme B (default: --init).")
@click.option("--epochs", type=click.IntRange(0), default=250, show_default=True)
@click.option("--max-steps", type=click.IntRange(0), help="Stop after this many optimizer steps.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Init, mask and checkpoint seed.")
@click.option("--data-seed", type=click.IntRange(0, 2**32 - 1), help="Split/order seed (default: derived from --seed).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", is_flag=True, help="Mixed precision (CUDA only).")
@click.option("--amp-dtype", type=click.Choice(["float16", "bfloat16"]), default="float16", show_default=True)
@click.option("--lr", type=click.FloatRange(0.0), default=0.1, show_default=True)
@click.option("--momentum", type=click.FloatRange(0.0), default=0.9, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0.0), default=5e-4, show_default=True)
@click.option("--lr-drop-epochs", help="Divide lr by 10 at these epochs, e.g. 30,60,80.")
@click.option("--lr-drop-steps", help="Divide lr by 10 at these steps (default: every 25k steps, 30k for CIFAR).")
@click.option("--batch-size", type=click.IntRange(1), help="Global batch size (default: 100, CIFAR 128).")
@click.option("--val-split", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True,
              help="Validation fraction for early stopping: 0.1 = 9/1, 0.05 = 19/1, 0 = none.")
@click.option("--patience", type=click.IntRange(1), help="Stop after N epochs without a better validation accuracy.")
@click.option("--augment/--no-augment", default=None, help="Flips + 4-pixel shifts (default: on for CIFAR).")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT's .resume.pt checkpoint if present.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), help="metrics.json path (default: beside -o).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON (no bar, no epoch lines).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="model.pt", show_default=True,
              help="The trained model (checkpoint convention; `fzpack compress` takes it).")
def train_cmd(method: str, arch: str, arch_config: str | None, dataset: str, data_dir: str | None, synthetic_size: int | None,
              freeze_rate: float, init: str, reinit: str | None, epochs: int, max_steps: int | None, seed: int,
              data_seed: int | None, device: str, amp: bool, amp_dtype: str, lr: float, momentum: float, weight_decay: float,
              lr_drop_epochs: str | None, lr_drop_steps: str | None, batch_size: int | None, val_split: float,
              patience: int | None, augment: bool | None, resume: bool, no_progress: bool, metrics_path: str | None,
              as_json: bool, output: str) -> None:
    """Train a FreezeNet (or SNIP, random-mask, dense baseline) and save it for `fzpack compress`.

    Paper defaults (FreezeNet S1.1): SGD momentum 0.9, lr 0.1 / 10 every 25k steps (30k CIFAR),
    weight decay 5e-4 on trained parameters, batch 100 (CIFAR 128), 9/1 train/validation split,
    the best validation epoch is kept. Writes OUTPUT, metrics.json beside it, and
    OUTPUT.resume.pt after every epoch. Multi-process: launch with torchrun.

    \b
    Examples:
      fzpack train --method freezenet --arch lenet5-caffe --dataset fashion-mnist -q 0.99 --epochs 2 -o run/model.pt
      fzpack compress run/model.pt && fzpack evaluate run/model.fzp
      fzpack train --method snip --dataset synthetic --epochs 3 --json -o snip.pt
      fzpack train --dataset cifar10 --data-dir ~/cifar --arch vgg16-d --device cuda --amp -o vgg.pt
      fzpack train ... --epochs 20 --resume -o run/model.pt        # continue an interrupted run
      torchrun --nproc_per_node 2 -m fzpack_cli.main train --device cpu --epochs 2 -o ddp.pt
    """
    current_file(output)
    config = TrainConfig(
        method=method, arch=arch, arch_config=_arch_config(arch_config), dataset=dataset, data_dir=data_dir,
        synthetic_size=synthetic_size, freeze_rate=freeze_rate, init=init, reinit=reinit, seed=seed, data_seed=data_seed,
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
        lr_drop_epochs=_ints(lr_drop_epochs, "--lr-drop-epochs"), lr_drop_steps=_ints(lr_drop_steps, "--lr-drop-steps"),
        val_split=val_split, patience=patience, augment=augment, device=device, amp=amp, amp_dtype=amp_dtype,
        progress=not (no_progress or as_json),
    )
    log = None if as_json else (lambda line: click.echo(line, err=True))
    r = train(config, output, resume=resume, metrics_path=metrics_path, log=log)
    if r.output is None:  # not rank 0 of a distributed run
        return
    m = r.metrics
    if as_json:
        print_json({k: v for k, v in m.items() if k != "history"} | {"output": str(r.output), "metrics_path": str(r.metrics_path)})
        return
    q = "" if m["method"] == "dense" else f", q = {m['q']:.4f} (q_beta {m['q_beta']:.4f})"
    click.echo(f"{m['method']} {m['arch']['name']} on {m['dataset']}{q}: {m['trained_parameters']:,} of "
               f"{m['total_parameters']:,} parameters trained")
    val = f", val {m['val_accuracy']:.4f} (best epoch {m['best_epoch']})" if m["val_accuracy"] is not None else ""
    click.echo(f"test accuracy {m['test_accuracy']:.4f}{val}; {m['epochs_run']} epochs, {m['steps']} steps, "
               f"{m['wall_time_s']:.1f} s on {m['device']}" + (f" x {m['world_size']}" if m["world_size"] > 1 else ""))
    click.echo(f"files: {r.output}, {r.metrics_path}" + (f", {r.resume_file}" if r.resume_file else ""))

"""`fzpack demo`."""

from __future__ import annotations

import sys

import click

from fzpack.demo import run_demo
from fzpack.progress import setting_from_flag
from fzpack_cli.app import cli, print_json


@cli.command("demo")
@click.option("-d", "--workdir", type=click.Path(file_okay=False), default="fzpack-demo", show_default=True, help="Where the files go.")
@click.option("--steps", type=click.IntRange(0, 100000), default=600, show_default=True, help="Training steps on the trained entries.")
@click.option("--rate", "-q", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.99, show_default=True, help="Freezing rate q.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=2026, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Fashion-MNIST IDX directory.")
@click.option("--progress/--no-progress", default=None,
              help="A progress bar, or one plain line per epoch and stage (default: the bar when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (no progress).")
def demo_cmd(workdir: str, steps: int, rate: float, seed: int, data_dir: str | None, progress: bool | None,
             as_json: bool) -> None:
    """Train a LeNet-5-Caffe FreezeNet, compress, restore, verify, compare sizes.

    \b
    Example:
      fzpack demo                 # well under a minute on 2 CPU cores
      fzpack demo --rate 0.999 --json
    """
    r = run_demo(workdir, steps=steps, rate=rate, seed=seed, data_dir=data_dir, progress=False if as_json else setting_from_flag(progress))
    if as_json:
        print_json(r.to_dict())
    else:
        click.echo(f"FreezeNet LeNet-5-Caffe on {r.dataset}: q = {r.q}, {r.trained_weights:,} trained weights, "
                   f"{r.steps} steps ({r.epochs} epochs, {r.train_seconds:.0f} s), validation accuracy {r.val_accuracy:.4f}")
        click.echo(f"{'representation':<42} {'bytes':>12} {'factor':>8}")
        for row in r.rows:
            click.echo(f"{row['representation']:<42} {row['bytes']:>12,} {row['factor']:>7.1f}x")
        click.echo(f"restored == original, bit for bit: {'yes' if r.bit_identical else 'NO'}")
        click.echo(f"test accuracy: trained {r.accuracy_before:.4f}, restored from .fzp {r.accuracy_restored:.4f}")
        click.echo(f"files: {r.files['checkpoint']}, {r.files['fzp']}  ({r.seconds:.1f} s)")
    if not r.bit_identical:
        sys.exit(1)

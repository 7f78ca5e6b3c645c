"""`fzpack evaluate`."""

from __future__ import annotations

import click

from fzpack.data.datasets import list_datasets
from fzpack.train.distributed import resolve_device
from fzpack.train.metrics import evaluate_file
from fzpack_cli.app import cli, current_file, print_json


@cli.command("evaluate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--dataset", type=click.Choice(list_datasets()), help="Data set (default: the one recorded in MODEL).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Directory of the data files.")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate_cmd(model: str, dataset: str | None, data_dir: str | None, split: str, device: str, batch_size: int,
                 as_json: bool) -> None:
    """Test accuracy of a trained model, from its .pt checkpoint or straight from its .fzp file.

    A .fzp file is decoded in memory (frozen weights regenerated on the device); no .pt is
    written. The architecture and, by default, the data set come from the file.

    \b
    Examples:
      fzpack evaluate model.fzp
      fzpack evaluate model.pt --dataset fashion-mnist --json
    """
    current_file(model)
    r = evaluate_file(model, dataset, data_dir=data_dir, device=resolve_device(device), batch_size=batch_size, split=split)
    if as_json:
        print_json(r)
        return
    what = f"{r['method']}, q = {r['q']:.4f}" if r.get("q") is not None else (r["method"] or "plain")
    click.echo(f"{model} ({what}): {r['dataset']} {r['split']} accuracy {r['accuracy']:.4f} "
               f"({r['n']:,} images, loss {r['loss']:.4f}, {r['seconds']:.1f} s)")

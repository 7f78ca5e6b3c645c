"""`fzpack restore`."""

from __future__ import annotations

import click

from fzpack.restore import restore_file
from fzpack_cli.app import cli, current_file, human_bytes, print_json


@cli.command("restore")
@click.argument("fzp", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file (default: FZP with suffix .pt or .safetensors).")
@click.option("--format", "fmt", type=click.Choice(["pt", "safetensors"]), default="pt", show_default=True, help="Output file format.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def restore_cmd(fzp: str, output: str | None, fmt: str, as_json: bool) -> None:
    """Restore a .fzp file to a bit-identical checkpoint.

    \b
    Example:
      fzpack restore model.fzp                       # writes model.pt
      fzpack restore model.fzp --format safetensors  # fzpack entry kept in __metadata__
    """
    current_file(fzp)
    r = restore_file(fzp, output, format=fmt)
    if as_json:
        print_json(r.to_dict())
    else:
        click.echo(f"{fzp} -> {r.output} ({r.format}, {r.tensors} tensors, {human_bytes(r.output_bytes)})")

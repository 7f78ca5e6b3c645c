"""`fzpack compress`."""

from __future__ import annotations

import click

from fzpack.compress import compress
from fzpack_cli.app import cli, current_file, human_bytes, print_json


@cli.command("compress")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file (default: MODEL with suffix .fzp).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def compress_cmd(model: str, output: str | None, as_json: bool) -> None:
    """Compress a PyTorch checkpoint into a .fzp file, losslessly.

    \b
    Example:
      fzpack compress model.pt              # writes model.fzp
      fzpack compress model.pt -o small.fzp --json
    """
    current_file(model)
    r = compress(model, output)
    if as_json:
        print_json(r.to_dict())
        return
    click.echo(f"{model} -> {r.output}")
    if r.input_bytes is not None:
        click.echo(f"  input file     {human_bytes(r.input_bytes):>14}")
    click.echo(f"  dense fp32     {human_bytes(r.dense_fp32_bytes):>14}")
    click.echo(f"  .fzp file      {human_bytes(r.output_bytes):>14}   factor {r.factor:,.1f}x vs dense fp32")
    for part in ("header", "mask", "trained", "other", "index"):
        if r.breakdown[part] or part in ("header", "other"):
            click.echo(f"    {part:<12} {human_bytes(r.breakdown[part]):>14}")
    for note in r.notes:
        click.echo(f"  note: {note}")

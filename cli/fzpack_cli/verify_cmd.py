"""`fzpack verify`."""

from __future__ import annotations

import sys

import click

from fzpack.verify import verify
from fzpack_cli.app import cli, current_file, print_json


@cli.command("verify")
@click.argument("fzp", type=click.Path(dir_okay=False))
@click.option("--against", type=click.Path(dir_okay=False), help="Original .pt: the restore must equal it bit for bit.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(fzp: str, against: str | None, as_json: bool) -> None:
    """Check checksums, decode everything, optionally compare with the original.

    Exits 1 when the file is corrupted or differs from --against.

    \b
    Example:
      fzpack verify model.fzp --against model.pt
    """
    current_file(fzp)
    r = verify(fzp, against)
    if as_json:
        print_json(r.to_dict())
    elif r.ok:
        extra = f", bit-identical to {against}" if r.compared else ""
        click.echo(f"{fzp}: OK ({r.tensors} tensors decoded, checksums valid{extra})")
    else:
        click.echo(f"{fzp}: DIFFERS from {against}:", err=True)
        for d in r.differences:
            click.echo(f"  {d}", err=True)
    if not r.ok:
        sys.exit(1)

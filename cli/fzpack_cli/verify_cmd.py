"""`fzpack verify`."""

from __future__ import annotations

import sys

import click

from fzpack.verify import verify
from fzpack_cli.app import cli, current_file, print_json


@cli.command("verify")
@click.argument("fzp", type=click.Path(dir_okay=False))
@click.option("--against", type=click.Path(dir_okay=False), help="Original .pt: the restore must equal it bit for bit.")
@click.option("--tolerance", type=click.FloatRange(0.0), default=None,
              help="With --against: floating tensors may differ by this much (absolute), for lossy files "
                   "(compress --values fp16|bf16|q8). Everything else must still match exactly.")
@click.option("--rtol", type=click.FloatRange(0.0), default=0.0, show_default=True,
              help="With --against: relative tolerance added to --tolerance (|a-b| <= tolerance + rtol*|a|), "
                   "e.g. 0.00049 (2^-11) for fp16, 0.0039 (2^-8) for bf16.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(fzp: str, against: str | None, tolerance: float | None, rtol: float, as_json: bool) -> None:
    """Check checksums, decode everything, optionally compare with the original.

    Exits 1 when the file is corrupted or differs from --against (beyond the tolerance).

    \b
    Example:
      fzpack verify model.fzp --against model.pt
      fzpack verify model-q8.fzp --against model.pt --tolerance 0.001
      fzpack verify model-fp16.fzp --against model.pt --rtol 0.00049
    """
    current_file(fzp)
    r = verify(fzp, against, tolerance=tolerance, rtol=rtol)
    if as_json:
        print_json(r.to_dict())
    elif r.ok:
        if not r.compared:
            extra = ""
        elif r.tolerance is None:
            extra = f", bit-identical to {against}"
        else:
            extra = f", within tolerance of {against}: max abs error {r.max_abs_error:.3g}"
        click.echo(f"{fzp}: OK ({r.tensors} tensors decoded, checksums valid{extra})" + ("; LOSSY file" if r.lossy else ""))
    else:
        click.echo(f"{fzp}: DIFFERS from {against} (max abs error {r.max_abs_error:.3g}):", err=True)
        for d in r.differences:
            click.echo(f"  {d}", err=True)
        if r.lossy and r.tolerance is None:
            click.echo("  (expected: this file is LOSSY; pass --tolerance / --rtol with its documented bound to accept it)", err=True)
    if not r.ok:
        sys.exit(1)

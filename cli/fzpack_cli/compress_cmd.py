"""`fzpack compress`."""

from __future__ import annotations

import click

from fzpack.codecs.lossy import MODES
from fzpack.compress import compress
from fzpack_cli.app import cli, current_file, human_bytes, print_json


@cli.command("compress")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file (default: MODEL with suffix .fzp).")
@click.option("--values", type=click.Choice(MODES), default="lossless", show_default=True,
              help="How the trained values of frozen tensors are stored. lossless (default) restores bit for bit; "
                   "fp16 / bf16 round them to 16 bits (relative error <= 2^-11 / 2^-8); q8 quantises each tensor to "
                   "<= 256 levels (error <= step/2 on a uniform grid). LOSSY modes apply to those values only: biases, "
                   "BatchNorm, masks and every other tensor stay lossless.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def compress_cmd(model: str, output: str | None, values: str, as_json: bool) -> None:
    """Compress a PyTorch checkpoint into a .fzp file (lossless unless --values says otherwise).

    \b
    Example:
      fzpack compress model.pt                      # writes model.fzp, bit-exact
      fzpack compress model.pt -o small.fzp --json
      fzpack compress model.pt --values q8 -o model-q8.fzp   # LOSSY trained values
    """
    current_file(model)
    r = compress(model, output, values=values)
    if as_json:
        print_json(r.to_dict())
        return
    click.echo(f"{model} -> {r.output}" + (f"  LOSSY ({values} trained values)" if r.lossy else ""))
    if r.input_bytes is not None:
        click.echo(f"  input file     {human_bytes(r.input_bytes):>14}")
    click.echo(f"  dense fp32     {human_bytes(r.dense_fp32_bytes):>14}")
    click.echo(f"  .fzp file      {human_bytes(r.output_bytes):>14}   factor {r.factor:,.1f}x vs dense fp32")
    for part in ("header", "mask", "trained", "other", "index"):
        if r.breakdown[part] or part in ("header", "other"):
            click.echo(f"    {part:<12} {human_bytes(r.breakdown[part]):>14}")
    if r.lossy:
        n = sum(s["count"] for s in r.lossy_streams)
        click.echo(f"  LOSSY: {n:,} trained values stored as {values}; max abs error {r.max_abs_error:.3g} "
                   f"(measured by decoding; bound {r.error_bound}); everything else is lossless")
    for note in r.notes:
        click.echo(f"  note: {note}")

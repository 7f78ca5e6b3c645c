"""`fzpack compare`."""

from __future__ import annotations

import click

from fzpack.compare import CompareReport, compare
from fzpack_cli.app import cli, current_file, print_json


def _yes(v: bool | None) -> str:
    return "-" if v is None else "yes" if v else "no"


def render(r: CompareReport) -> list[str]:
    """The text table, its notes and the mask bounds."""
    lines = [f"{r.source}: {r.parameters:,} parameters" + (f", {r.trained_parameters:,} trained ({r.method})" if r.frozen else "")
             + f"; dense fp32 {r.dense_fp32_bytes:,} B",
             f"{'representation':<42} {'bytes':>11} {'factor':>8} {'bits/par':>9} {'bits/trn':>9} {'lossless':>8} "
             f"{'max abs err':>11} {'restores':>8}"]
    for row in r.rows:
        err = "" if row.max_abs_error is None else f"{row.max_abs_error:.3g}"
        bpt = "" if row.bits_per_trained_parameter is None else f"{row.bits_per_trained_parameter:.2f}"
        lines.append(f"{row.representation[:42]:<42} {row.bytes:>11,} {row.factor:>7.1f}x {row.bits_per_parameter:>9.3f} {bpt:>9} "
                     f"{_yes(row.lossless):>8} {err:>11} {_yes(row.restorable):>8}")
    for note in r.notes:
        lines.append(f"note: {note}")
    if r.masks:
        t = r.mask_totals
        lines.append(f"masks: fzpack {t['fzpack_bytes']:,.0f} B vs entropy bounds (no side information): per-layer i.i.d. "
                     f"{t['iid_bytes']:,.0f} B, per-row/column {t['rowcol_bytes']:,.0f} B, row x column independence "
                     f"{t['independence_bytes']:,.0f} B")
        lines.append(f"  {'tensor':<28} {'numel':>10} {'trained':>8} {'fzpack B':>9} {'iid B':>8} {'row B':>8} {'col B':>8} {'indep B':>8}")
        for m in r.masks:
            lines.append(f"  {m['name'][:28]:<28} {m['numel']:>10,} {m['trained']:>8,} {m['fzpack_bytes']:>9,} {m['iid_bytes']:>8,.0f} "
                         f"{m['row_bytes']:>8,.0f} {m['col_bytes']:>8,.0f} {m['independence_bytes']:>8,.0f}")
    return lines


@cli.command("compare")
@click.argument("model", type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write a bar chart (log bytes) as PNG (needs matplotlib).")
@click.option("--keep", type=click.Path(file_okay=False), help="Keep every produced artifact in this directory.")
@click.option("--progress/--no-progress", default=None, help="Force the bar on or off (default: on a terminal only).")
def compare_cmd(model: str, as_json: bool, plot: str | None, keep: str | None, progress: bool | None) -> None:
    """Produce MODEL in every representation, measure the bytes, decode each back.

    Rows: torch.save, safetensors, zstd-19, byte-grouped + zstd, ZipNN (if installed), and for
    frozen checkpoints sparse COO / CSR torch.save, bitmask + values, the FreezeNet paper's count
    (not restorable), then fzpack lossless and fzpack with LOSSY fp16 / bf16 / q8 trained values.
    Every size is a file actually produced; lossless means it decoded back bit for bit.

    \b
    Example:
      fzpack compare model.pt
      fzpack compare model.fzp --json --plot sizes.png --keep artifacts/
    """
    current_file(model)
    r = compare(model, keep=keep, progress=False if as_json else progress)
    if plot:
        from fzpack.compare_plot import plot_report

        plot_report(r, plot)
    if as_json:
        print_json(r.to_dict())
        return
    for line in render(r):
        click.echo(line)
    if plot:
        click.echo(f"plot: {plot}")

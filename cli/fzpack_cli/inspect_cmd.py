"""`fzpack inspect`."""

from __future__ import annotations

import click

from fzpack.inspect import inspect
from fzpack_cli.app import cli, current_file, human_bytes, print_json


@cli.command("inspect")
@click.argument("fzp", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def inspect_cmd(fzp: str, as_json: bool) -> None:
    """Show what a .fzp file holds and what its bytes are spent on.

    \b
    Example:
      fzpack inspect model.fzp
      fzpack inspect model.fzp --json | jq .q
    """
    current_file(fzp)
    info = inspect(fzp)
    if as_json:
        print_json(info)
        return
    click.echo(f"{fzp}: fzpack {info['format_version']}, {human_bytes(info['file_bytes'])}, "
               f"factor {info['factor']:,.1f}x vs dense fp32 ({human_bytes(info['dense_fp32_bytes'])})")
    if info["lossy"]:
        click.echo(f"  lossy ({' + '.join(info['lossy_values'])} trained values): restores approximately, not bit for bit")
    if info["seed"] is not None:
        click.echo(f"  method {info['method']}, seed {info['seed']}, generator {info['generator']}")
        click.echo(f"  q = {info['q']:.4f}, q_beta = {info['q_beta']:.4f}: {info['trained_weights']:,} of "
                   f"{info['frozen_weights']:,} weights trained, {info['always_trained']:,} other trained parameters")
        bpt = info["bits_per_trained_weight"]
        click.echo(f"  {info['bits_per_parameter']:.3f} bits/parameter" + (f", {bpt:.1f} bits/trained weight" if bpt else ""))
        click.echo(f"  mask {human_bytes(info['mask_bytes'])} (per-layer i.i.d. bound {info['mask_iid_bound_bytes']:,.0f} B)")
        if info["metadata"]:
            shown = {k: v for k, v in info["metadata"].items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
            click.echo("  metadata: " + ", ".join(f"{k} {v}" for k, v in list(shown.items())[:12]))
    for line in info["family_lines"]:
        click.echo(line)
    b = info["breakdown"]
    click.echo("  bytes: " + ", ".join(f"{k} {v:,}" for k, v in b.items() if v))
    click.echo(f"  {'tensor':<28} {'shape':<18} {'kind':<7} {'trained':>9} {'q':>7} {'mask B':>7} {'iid B':>8} {'exc':>5}")
    for t in info["tensors"]:
        shape = "x".join(map(str, t["shape"])) or "()"
        if t["kind"] == "frozen":
            extra = f"{t['trained']:>9,} {t['q']:>7.4f} {t['mask_bytes']:>7,} {t['mask_iid_bound_bytes']:>8,.0f} {t['exceptions']:>5}"
            if t["mask"] != "coded":
                extra += f"  (mask {t['mask']})"
            if "scale" in t:
                extra += f"  (scale {t['scale']:.6g})"
            if t["additive"]:
                extra += "  (offsets)"
            if t["init"]["dist"] == "bank":
                extra += f"  (bank {t['init']['bank']} @ {t['init']['offset']})"
            if t["stored_dense"]:
                extra += "  (stored dense)"
        else:
            extra = f"{'':>9}" + (f"  = {t['alias_of']}" if t["kind"] == "alias" else "")
        click.echo(f"  {t['name'][:28]:<28} {shape[:18]:<18} {t['kind']:<7} {extra}")
    click.echo(f"  {'stream':<6} {'role':<7} {'group':<8} {'codec':<15} {'raw B':>10} {'stored B':>10}")
    for s in info["streams"]:
        click.echo(f"  {s['index']:<6} {s['role']:<7} {s['group']:<8} {s['codec']:<15} {s['raw_bytes']:>10,} {s['stored_bytes']:>10,}"
                   + (f"  {_lossy_text(s['lossy'])}" if "lossy" in s else ""))


def _lossy_text(d: dict) -> str:
    if "grid" in d:
        grid = f"{d['grid']} {d['levels']} levels" + (f", step {d['step']:.3g}" if "step" in d else "")
        return f"LOSSY {grid}"
    return f"LOSSY ({d['bound']})"

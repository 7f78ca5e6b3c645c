"""The click group and the one place where errors become a single line and an exit code."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from fzpack.errors import FzpackError

EXIT_ERROR = 1


class FzpackGroup(click.Group):
    """Turns every expected failure into `fzpack: <file>: <problem>` and exit code 1, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FzpackError as e:
            click.echo(f"fzpack: {ctx.meta.get('fzpack.file', '')}{': ' if ctx.meta.get('fzpack.file') else ''}{e}", err=True)
            sys.exit(EXIT_ERROR)
        except BrokenPipeError:
            # `fzpack inspect x.fzp | head`: the reader left; stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except (OSError, MemoryError) as e:
            where = getattr(e, "filename", None) or ctx.meta.get("fzpack.file", "")
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            click.echo(f"fzpack: {where}: {reason}" if where else f"fzpack: {reason}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("fzpack: interrupted", err=True)
            sys.exit(130)


def current_file(path: Any) -> None:
    """Record the file a command works on, so an error line can name it."""
    click.get_current_context().meta["fzpack.file"] = str(path)


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def human_bytes(n: int) -> str:
    return f"{n:,} B"


@click.group(cls=FzpackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fzpack")
def cli() -> None:
    """fzpack: tiny files for networks trained with frozen random weights.

    \b
    Examples:
      fzpack demo                      train a FreezeNet, compress, restore, verify it
      fzpack train --arch lenet5-caffe -q 0.99 -o model.pt
      fzpack compress model.pt         -> model.fzp (lossless)
      fzpack restore model.fzp         -> model.pt, bit-identical
      fzpack inspect model.fzp --json  what the bytes are spent on
      fzpack compare model.pt          every representation, produced and measured
      fzpack evaluate model.fzp        test accuracy straight from the compact file
    """

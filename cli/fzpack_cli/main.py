"""Entry point of the `fzpack` console script: importing the command modules registers them."""

from fzpack_cli import compare_cmd, compress_cmd, demo_cmd, evaluate_cmd, inspect_cmd, restore_cmd, train_cmd, verify_cmd  # noqa: F401
from fzpack_cli.app import cli

__all__ = ["cli"]

if __name__ == "__main__":
    cli()

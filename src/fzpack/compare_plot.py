"""`fzpack compare --plot`: the comparison as a bar chart (log bytes), needs the ``plot`` extra."""

from __future__ import annotations

import os

from fzpack.compare import CompareReport
from fzpack.errors import FzpackError


def plot_report(report: CompareReport, path: str | os.PathLike) -> None:
    """Write a PNG bar chart of every row's bytes on a log axis, coloured by what it restores.

    Args:
        report: from :func:`fzpack.compare.compare`.
        path: the PNG to write.

    Example:
        >>> plot_report(compare("model.pt"), "sizes.png")
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise FzpackError("--plot needs matplotlib: pip install 'fzpack[plot]'") from e
    rows = report.rows
    colours = ["tab:green" if r.lossless else "tab:orange" if r.restorable else "tab:gray" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.6))
    y = range(len(rows))
    ax.barh(list(y), [r.bytes for r in rows], color=colours)
    ax.set_yticks(list(y), [r.representation for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("bytes (log scale)")
    for i, r in enumerate(rows):
        ax.text(r.bytes, i, f" {r.bytes:,} B  ({r.factor:,.1f}x)", va="center", fontsize=8)
    ax.set_xlim(min(r.bytes for r in rows) / 2, max(r.bytes for r in rows) * 8)
    title = f"{os.path.basename(report.source)}: {report.parameters:,} parameters"
    if report.frozen:
        title += f", {report.trained_parameters:,} trained ({report.method})"
    ax.set_title(title + "\ngreen: lossless   orange: lossy, restorable   gray: cannot restore the checkpoint", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Progress output that suits where it goes: a live bar on a terminal, plain lines in a log.

A tqdm bar redraws itself with carriage returns; written to a file or a CI log, every redraw
becomes text (hundreds of KB of frames per epoch). Long operations therefore ask `bar_enabled`
whether to draw a bar at all and report each finished stage (an epoch) as one plain line, which
is all a log needs. ``progress`` settings everywhere mean: ``True`` force the bar, ``False`` no
bar, ``None`` (the default) a bar only when the stream is a terminal.
"""

from __future__ import annotations

import sys
from typing import IO

__all__ = ["bar_enabled", "is_terminal"]


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where bars go) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams (pytest capture, click runner)
        return False


def bar_enabled(progress: bool | None, stream: IO[str] | None = None) -> bool:
    """Draw a progress bar? ``True``: yes; ``False``: no; ``None``: only on a terminal.

    Example:
        >>> bar_enabled(None, open("/dev/null", "w"))
        False
    """
    if progress is None:
        return is_terminal(stream)
    return bool(progress)

"""Progress of long operations: a tqdm bar on a terminal, one plain line per step elsewhere.

A bar redraws itself with carriage returns, which is right on a terminal and wrong in a log
file or a CI job, where every frame stays. This module decides once per operation which of
the two to show, so that every long operation (training, the demo, later compare and
compress) behaves the same:

* ``"bar"``: a tqdm bar (forced, even when the stream is not a terminal);
* ``"lines"``: no bar; the operation prints one plain line per epoch or stage;
* ``"off"``: nothing;
* ``"auto"`` (also ``True`` and ``None``): ``"bar"`` when the stream is a terminal, else ``"lines"``.

``True`` means auto and ``False`` means off, so a saved ``progress: bool`` (`TrainConfig`
before the modes existed) keeps its meaning: show progress, or don't.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

__all__ = ["PROGRESS_SETTINGS", "Progress", "is_progress_setting", "progress_mode", "setting_from_flag"]

T = TypeVar("T")

# Every accepted setting; "auto", True and None are one thing, as are "off" and False.
PROGRESS_SETTINGS: tuple[Any, ...] = (True, False, None, "auto", "bar", "lines", "off")

ProgressSetting = bool | str | None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def is_progress_setting(value: Any) -> bool:
    """Whether ``value`` is one of `PROGRESS_SETTINGS` (1 and 0 are not, though they equal True and False)."""
    return value is None or isinstance(value, bool) or (isinstance(value, str) and value in PROGRESS_SETTINGS)


def progress_mode(setting: ProgressSetting = True, stream: TextIO | None = None) -> str:
    """Resolve a progress setting to what to show: ``"bar"``, ``"lines"`` or ``"off"``.

    Args:
        setting: one of `PROGRESS_SETTINGS` (see the module docstring).
        stream: where the progress goes (default: ``sys.stderr`` now); auto looks at whether
            it is a terminal.

    Returns:
        ``"bar"``, ``"lines"`` or ``"off"``.

    Example:
        >>> import io
        >>> progress_mode(True, io.StringIO()), progress_mode("bar", io.StringIO()), progress_mode(False)
        ('lines', 'bar', 'off')
    """
    if not is_progress_setting(setting):
        raise ValueError(f"progress must be one of {', '.join(map(repr, PROGRESS_SETTINGS))}, got {setting!r}")
    if setting is None or setting is True or setting == "auto":
        return "bar" if _is_terminal(stream if stream is not None else sys.stderr) else "lines"
    if setting is False or setting == "off":
        return "off"
    return str(setting)  # "bar" or "lines"


def setting_from_flag(flag: bool | None) -> str:
    """The setting of a ``--progress/--no-progress`` option: forced bar, forced lines, or auto (unset).

    Example:
        >>> setting_from_flag(None), setting_from_flag(True), setting_from_flag(False)
        ('auto', 'bar', 'lines')
    """
    return "auto" if flag is None else "bar" if flag else "lines"


class Progress:
    """How one long operation shows its progress, decided once from a setting and a stream.

    `bar` wraps an iterable in a tqdm bar that is disabled unless the mode is ``"bar"``; `line`
    prints a plain line only in ``"lines"`` mode. An operation calls both: on a terminal the
    user sees the bar, in a log one line per epoch or stage, never both.

    Args:
        setting: one of `PROGRESS_SETTINGS`.
        stream: where bar and lines go (default: ``sys.stderr`` at construction).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> p = Progress(True, out)  # not a terminal: lines
        >>> for _ in p.bar(range(3), desc="epoch 1/1"):
        ...     pass
        >>> p.line("epoch 1/1: loss 0.5")
        >>> out.getvalue()
        'epoch 1/1: loss 0.5\\n'
    """

    def __init__(self, setting: ProgressSetting = True, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.mode = progress_mode(setting, self.stream)

    @property
    def shows_bar(self) -> bool:
        return self.mode == "bar"

    @property
    def shows_lines(self) -> bool:
        return self.mode == "lines"

    def bar(self, iterable: Iterable[T], *, total: int | None = None, desc: str | None = None, **kwargs: Any) -> tqdm:
        """``iterable`` wrapped in a tqdm bar (a pass-through, drawing nothing, unless the mode is bar).

        Args:
            iterable: what to iterate over.
            total: its length, when ``len()`` cannot tell.
            desc: the bar's label.
            **kwargs: more tqdm options (the defaults: leave=False, dynamic_ncols=True).

        Returns:
            The tqdm object; iterate over it, call ``set_postfix``, ``close`` it.
        """
        options: dict[str, Any] = {"leave": False, "dynamic_ncols": True, **kwargs}
        return tqdm(iterable, total=total, desc=desc, disable=not self.shows_bar, file=self.stream, **options)

    def line(self, text: str) -> None:
        """Print ``text`` as one line, in lines mode only (a bar already shows it on a terminal)."""
        if self.shows_lines:
            print(text, file=self.stream, flush=True)

"""The one exception type users catch; every failure mode of fzpack raises a subclass of it."""

from __future__ import annotations


class FzpackError(Exception):
    """Base class for every error fzpack raises on purpose.

    The message is a single line meant for a person: what is wrong and, where it helps,
    what to do next. The CLI prints it prefixed with the file name and exits non-zero.
    """


class FormatError(FzpackError):
    """A `.fzp` file is malformed, truncated, corrupted or of an unsupported version."""


class CheckpointError(FzpackError):
    """A `.pt` checkpoint cannot be read, or its `fzpack` entry is inconsistent."""


class CodecError(FormatError):
    """A stream cannot be encoded or decoded with the codec it names."""


class PayloadError(FormatError):
    """A federated update payload (formats/fl-update-v1.md) is malformed, corrupted, or for another base."""


class OutputError(FzpackError, OSError):
    """An output file could not be written (read-only directory, full disk, ...); nothing was left under its name.

    Also an ``OSError``, so code that caught the operating system's error keeps working.
    """

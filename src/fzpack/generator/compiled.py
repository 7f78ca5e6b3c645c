"""Which CPU kernel regenerates a tensor: the compiled (numba) one or the pure-numpy one.

Both give the same bits (the numpy kernels and `reference.py` stay the executable specification;
the tests hold the compiled kernels to them). The choice:

* ``FZPACK_KERNEL=auto`` (default): compiled when numba imports, for ranges of at least
  `AUTO_MIN_ELEMENTS` elements; smaller ranges, and every range when numba is missing, use numpy.
  A process that only ever regenerates small tensors never pays numba's import and set-up
  (~0.5-1 s once per process).
* ``FZPACK_KERNEL=compiled``: always compiled; an error if numba cannot be imported.
* ``FZPACK_KERNEL=numpy``: never compiled.

`set_kernel` overrides the variable at run time. The compiled kernels run on the CPU only: a CUDA
target is served by the torch kernels (`kernels_torch.py`), never by these.
"""

from __future__ import annotations

import os
from types import ModuleType

from fzpack.errors import FzpackError

KERNELS = ("auto", "numpy", "compiled")
#: In auto mode, ranges shorter than this stay on numpy (below it numba's call overhead and the
#: one-time import outweigh the gain).
AUTO_MIN_ELEMENTS = 1 << 14

_choice: str | None = None  # None: read FZPACK_KERNEL on first use
_module: ModuleType | None = None
_import_error: str | None = None


def _check(name: object) -> str:
    if name not in KERNELS:
        raise FzpackError(f"unknown generator kernel {name!r}; use one of {', '.join(KERNELS)} (FZPACK_KERNEL)")
    return name  # type: ignore[return-value]


def set_kernel(name: str | None) -> None:
    """Choose the CPU generator kernel: "auto", "numpy" or "compiled" (None: back to $FZPACK_KERNEL).

    Args:
        name: the kernel; the output is bit-identical whichever is chosen.

    Example:
        >>> set_kernel("numpy"); get_kernel()
        'numpy'
        >>> set_kernel(None)
    """
    global _choice
    _choice = None if name is None else _check(name)


def get_kernel() -> str:
    """The configured kernel choice: "auto", "numpy" or "compiled".

    Returns:
        ``set_kernel``'s choice, else $FZPACK_KERNEL, else "auto".

    Example:
        >>> get_kernel() in ("auto", "numpy", "compiled")
        True
    """
    if _choice is not None:
        return _choice
    return _check(os.environ.get("FZPACK_KERNEL", "auto") or "auto")


def load() -> ModuleType | None:
    """The compiled kernel module, or None if numba is not importable (the reason: `unavailable_reason`)."""
    global _module, _import_error
    if _module is None and _import_error is None:
        try:
            from fzpack.generator import kernels_compiled
        except Exception as exc:  # ImportError, or numba failing to initialise on this platform
            _import_error = f"{type(exc).__name__}: {exc}"
        else:
            _module = kernels_compiled
    return _module


def mask_kernels_for(count: int) -> ModuleType | None:
    """The compiled mask-codec kernels (`fzpack.codecs.mask_kernels`) under the same choice as `compiled_for`.

    Args:
        count: entries of the mask.

    Returns:
        The module, or None for the numpy / constriction path.

    Example:
        >>> mask_kernels_for(0) is None
        True
    """
    if compiled_for(count) is None:
        return None
    from fzpack.codecs import mask_kernels  # numba imports: compiled_for succeeded

    return mask_kernels


def unavailable_reason() -> str | None:
    """Why the compiled kernels cannot be used here (None if they can)."""
    load()
    return _import_error


def compiled_for(count: int) -> ModuleType | None:
    """The compiled module if a range of `count` elements should use it under the current choice.

    Args:
        count: elements in the range.

    Returns:
        The module, or None for the numpy path.

    Raises:
        FzpackError: "compiled" was asked for explicitly and numba cannot be imported.

    Example:
        >>> compiled_for(0) is None
        True
    """
    choice = get_kernel()
    if choice == "numpy" or count == 0:
        return None
    if choice == "auto":
        return load() if count >= AUTO_MIN_ELEMENTS else None
    module = load()
    if module is None:
        raise FzpackError(f"FZPACK_KERNEL=compiled but the compiled kernels are unavailable ({_import_error}); "
                          "install numba or use FZPACK_KERNEL=numpy")
    return module


def active() -> str:
    """The kernel a large CPU range uses right now: "compiled" or "numpy".

    Example:
        >>> active() in ("compiled", "numpy")
        True
    """
    return "compiled" if compiled_for(AUTO_MIN_ELEMENTS) is not None else "numpy"

"""Which CPU kernel regenerates a tensor: the compiled (numba) one or the pure-numpy one.

Both give the same bits (the numpy kernels and `reference.py` stay the executable specification;
the tests hold the compiled kernels to them). The choice:

* ``FZPACK_KERNEL=auto`` (default): numpy until the process has done enough work for numba to
  pay, compiled after (ranges of at least `AUTO_MIN_ELEMENTS` elements; smaller ones stay on numpy).
  Importing numba and loading the cached kernels costs ~0.7 s and ~120 MB once per process (337 ms
  import + ~400 ms first call, measured on the 2-core EPYC of docs/results.md), while the compiled
  normal kernel saves ~4 ns per value: a one-off restore of VGG16-D (15 M values) took 0.86 s
  compiled and 0.21 s on numpy. So auto imports numba once the process has asked for
  `AUTO_IMPORT_ELEMENTS` values (about what the import costs), or up front when a caller announces
  a job that large (`expect`): a one-shot restore never pays more than about twice the cheaper
  choice, a long-running process ends up compiled. Where numba is missing auto stays on numpy.
* ``FZPACK_KERNEL=compiled``: always compiled; an error if numba cannot be imported.
* ``FZPACK_KERNEL=numpy``: never compiled.

`set_kernel` overrides the variable at run time. The compiled kernels run on the CPU only: a CUDA
target is served by the torch kernels (`kernels_torch.py`), never by these.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType

from fzpack.errors import FzpackError

KERNELS = ("auto", "numpy", "compiled")
#: In auto mode, ranges shorter than this stay on numpy (below it numba's call overhead and the
#: one-time import outweigh the gain).
AUTO_MIN_ELEMENTS = 1 << 14
#: In auto mode, numba is imported once the process has asked for this many values (ranges of at
#: least AUTO_MIN_ELEMENTS), or for a job announced this large: ~0.7 s of import / ~4 ns per value.
AUTO_IMPORT_ELEMENTS = 1 << 27

_work = 0  # values asked for in auto mode before numba was imported
_work_lock = threading.Lock()

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
        return _auto(count) if count >= AUTO_MIN_ELEMENTS else None
    module = load()
    if module is None:
        raise FzpackError(f"FZPACK_KERNEL=compiled but the compiled kernels are unavailable ({_import_error}); "
                          "install numba or use FZPACK_KERNEL=numpy")
    return module


def active() -> str:
    """The kernel a large CPU range uses right now: "compiled" or "numpy" (in auto mode: whether numba is loaded yet).

    Example:
        >>> active() in ("compiled", "numpy")
        True
    """
    if get_kernel() == "auto":  # no side effect: asking does not count as work (see `_auto`)
        return "compiled" if _module is not None else "numpy"
    return "compiled" if compiled_for(AUTO_MIN_ELEMENTS) is not None else "numpy"


def _auto(count: int) -> ModuleType | None:
    global _work
    if _module is not None or _import_error is not None:
        return _module
    with _work_lock:
        _work += count
        due = _work >= AUTO_IMPORT_ELEMENTS
    return load() if due else None


def expect(elements: int) -> None:
    """Announce a job of about `elements` values (a restore or a compress): in auto mode, a job of
    `AUTO_IMPORT_ELEMENTS` or more imports the compiled kernels before it starts.

    Args:
        elements: values the job will regenerate or decode.

    Example:
        >>> expect(10)  # small: nothing happens
    """
    if elements >= AUTO_IMPORT_ELEMENTS and get_kernel() == "auto":
        _auto(elements)

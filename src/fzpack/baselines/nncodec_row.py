"""NNCodec (MPEG-7 part 17 / ISO/IEC 15938-17 NNC reference codec) as an optional lossy baseline.

NNCodec 2.1.3 is installed by ``benchmarks/install_nncodec.sh`` (see docs/nncodec.md); nothing
here imports it before :func:`available`, :func:`encode` or :func:`decode` is called, so importing
fzpack never pays for (or fails on) it.

Byte accounting (what ``len(encode(...))`` counts):

* Floating-point entries go through ``nncodec.nnc.compress``; its bitstream carries each tensor's
  name, shape and quantization parameters, so it alone decodes back to a name -> array dict.
* Non-floating entries (e.g. BatchNorm ``num_batches_tracked``, int64) are not given to NNCodec:
  their raw little-endian bytes are appended after the bitstream, in key order. Their names,
  dtypes and shapes are taken from ``like`` at decode time (they are the network's structure,
  which every compared representation needs anyway). The LeNets have no such entries, so for them
  the bytes are exactly the file NNCodec writes.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from glob import glob
from types import ModuleType

import numpy as np
import torch

StateDict = dict[str, torch.Tensor]

INSTALL_HINT = "run benchmarks/install_nncodec.sh"

# Operators torchvision's _meta_registrations.py registers fake kernels for unconditionally; they
# exist only once torchvision's C++ library loads, which a CUDA torchvision wheel beside a CPU
# torch cannot do ("operator torchvision::nms does not exist").
_TV_OPS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _has_op(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _torchvision_shim() -> None:
    """Let a torchvision whose C++ ops cannot load be imported (nncodec only uses its datasets).

    Loads torchvision's ``_C`` library the way torchvision itself would; only when that fails are
    the operator schemas torchvision's Python side expects defined (schema only, no kernel: calling
    ``torchvision.ops.nms`` would still fail, which nncodec's coding path never does).
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    if _has_op("nms"):
        return
    libs = [p for d in spec.submodule_search_locations for p in glob(os.path.join(d, "_C.*so"))]
    try:
        for lib in libs[:1]:
            torch.ops.load_library(lib)
    except OSError:
        pass
    for name, schema in _TV_OPS.items():
        if not _has_op(name):
            torch.library.define(f"torchvision::{name}", schema)


def _nnc() -> ModuleType:
    """``nncodec.nnc`` (imported on first use, torchvision shim first)."""
    _torchvision_shim()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision: "Failed to load image Python extension"
        from nncodec import nnc
    return nnc


def available() -> str | None:
    """Whether NNCodec can be used here.

    Returns:
        None when ``nncodec`` imports (after the torchvision shim, if one is needed); otherwise a
        one-line reason that names the install script.
    """
    try:
        _nnc()
    except Exception as e:  # an optional extra: any import failure means "not usable here"
        if isinstance(e, ModuleNotFoundError) and e.name == "nncodec":
            return f"nncodec not installed: {INSTALL_HINT}"
        first = (str(e).strip().splitlines() or [""])[0]
        return f"nncodec not importable ({type(e).__name__}: {first}): {INSTALL_HINT}"
    return None


def _is_float(t: torch.Tensor) -> bool:
    return t.is_floating_point()


def _np_dtype(t: torch.Tensor) -> np.dtype:
    """Little-endian numpy dtype of a (non-floating) tensor's elements."""
    return torch.empty(0, dtype=t.dtype).numpy().dtype.newbyteorder("<")


def _tail_keys(sd: StateDict) -> list[str]:
    return sorted(k for k, v in sd.items() if not _is_float(v))


def encode(state_dict: StateDict, qp: int, nonweight_qp: int | None = None) -> bytes:
    """Code a state dict with NNCodec's uniform quantizer + DeepCABAC, in memory.

    Tensors with two or more dimensions are NNC "weights" and use ``qp``; 1-D and 0-D tensors
    (biases, BatchNorm statistics) use ``nonweight_qp``. At the default ``qp_density=2`` the step
    size is ``(1 + (qp & 3) / 4) * 2 ** (qp >> 2)`` (about ``2 ** (qp / 4)``), so more negative is
    finer; NNCodec allows -128..127. Dependent quantization (NNCodec's default) is on, with a
    rate-distortion trellis: the max abs error is not bounded by half a step (about 1.5-2 steps
    were measured on the LeNets). Nothing is seeded (NNCodec's coding path draws no random
    numbers; the output is a function of the input).

    Args:
        state_dict: name -> tensor. Floating entries are converted to float32 and coded by
            NNCodec (0-D ones as shape ``(1,)``); other entries are appended raw (module docstring).
        qp: quantization parameter of the weight tensors.
        nonweight_qp: quantization parameter of the 1-D/0-D tensors; None keeps NNCodec's
            default (-75). 0 is refused: NNCodec reads it as "unset" and uses ``qp - 8``.

    Returns:
        The bitstream NNCodec produces (the bytes its ``bitstream_path`` file would hold),
        followed by the raw bytes of any non-floating entries.

    Raises:
        ValueError: no floating-point entry, or ``nonweight_qp == 0``.
        RuntimeError: NNCodec is not usable here, or refused the input.
    """
    floats = {k: v for k, v in state_dict.items() if _is_float(v)}
    if not floats:
        raise ValueError("no floating-point tensor to code")
    if nonweight_qp == 0:
        raise ValueError("nonweight_qp=0 means 'unset' to NNCodec (it would use qp - 8)")
    why = available()
    if why is not None:
        raise RuntimeError(why)
    params = {k: v.detach().to("cpu", torch.float32).reshape(v.shape or (1,)).contiguous().numpy()
              for k, v in floats.items()}
    kwargs = {} if nonweight_qp is None else {"nonweight_qp": int(nonweight_qp)}
    try:
        bitstream = _nnc().compress(params, bitstream_path=None, qp=int(qp),
                                    return_bitstream=True, verbose=False, **kwargs)
    except SystemExit as e:  # NNCodec reports bad input by raising SystemExit
        raise RuntimeError(f"nncodec.compress: {e}") from e
    tail = b"".join(
        state_dict[k].detach().cpu().contiguous().numpy().astype(_np_dtype(state_dict[k])).tobytes()
        for k in _tail_keys(state_dict))
    return bytes(bitstream) + tail


def decode(data: bytes, like: StateDict) -> StateDict:
    """Read back what :func:`encode` produced.

    Args:
        data: bytes from :func:`encode`.
        like: the state dict that was encoded (or any with the same names, dtypes and shapes).
            Only the non-floating entries' layout is read from it; the floating entries' names
            and shapes come from the bitstream and are checked against it.

    Returns:
        name -> tensor for every key of ``like``, in its order: float32 for floating entries
        (NNCodec's reconstruction), the original dtype and exact values for the others.

    Raises:
        ValueError: the bitstream's tensors do not match ``like``'s floating entries.
        RuntimeError: NNCodec is not usable here, or could not read the bitstream.
    """
    tail_keys = _tail_keys(like)
    sizes = [like[k].numel() * like[k].element_size() for k in tail_keys]
    cut = len(data) - sum(sizes)
    if cut <= 0:
        raise ValueError(f"{len(data)} bytes cannot hold {sum(sizes)} raw bytes and a bitstream")
    why = available()
    if why is not None:
        raise RuntimeError(why)
    try:
        params = _nnc().decompress(bytearray(data[:cut]), verbose=False)
    except SystemExit as e:
        raise RuntimeError(f"nncodec.decompress: {e}") from e
    out: StateDict = {}
    for k, v in like.items():
        if not _is_float(v):
            continue
        if k not in params or params[k].shape != (v.shape or (1,)):
            got = params[k].shape if k in params else "nothing"
            raise ValueError(f"bitstream holds {got} for {k!r}, expected {tuple(v.shape)}")
        out[k] = torch.from_numpy(np.array(params[k], dtype=np.float32)).reshape(v.shape)
    extra = sorted(set(params) - set(out))
    if extra:
        raise ValueError(f"bitstream holds tensors not in like: {extra}")
    pos = cut
    for k, n in zip(tail_keys, sizes):
        dt = _np_dtype(like[k])
        arr = np.frombuffer(data[pos:pos + n], dtype=dt).astype(dt.newbyteorder("="))
        out[k] = torch.from_numpy(arr).reshape(like[k].shape)
        pos += n
    return {k: out[k] for k in like}

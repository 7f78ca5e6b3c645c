"""Opt-in lossy value codecs (formats/fzpack-v1.md §3.2.1-3.2.2): cast-fp16, cast-bf16, q8.

A lossy stream still *decodes* to the little-endian bytes of its dtype (``raw_length`` and
``itemsize`` keep their meaning); only the stored payload is the lossy encoding. Every payload
starts with the dtype id of the values it decodes to, so a reader can check it against the
tensors that consume the stream. fzpack's writer uses these codecs only for the trained values
of frozen tensors, and only when asked (``compress(..., values="fp16")``).

Error bounds (what the tests check): cast-fp16 ``|err| <= 2**-11 |v|`` for ``|v| >= 2**-14``
and ``<= 2**-25`` below; cast-bf16 ``|err| <= 2**-8 |v|`` (normal range); q8 uniform
``|err| <= step / 2`` (up to float32 rounding of the grid), q8 k-means measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fzpack.codecs.q8 import decode_q8, describe_grid, encode_q8
from fzpack.codecs.values import BYTEGROUP_ZSTD, CAST_BF16, CAST_FP16, CODEC_NAMES, Q8, RAW, ZSTD, decode_stream, encode_stream
from fzpack.container.layout import DTYPE_IDS, DTYPES
from fzpack.errors import CheckpointError, CodecError
from fzpack.tensor_bits import from_bytes, to_numpy_bytes

LOSSY_CODEC_NAMES = {c: CODEC_NAMES[c] for c in (CAST_FP16, CAST_BF16, Q8)}
MODES = ("lossless", "fp16", "bf16", "q8")
MODE_CODECS = {"fp16": CAST_FP16, "bf16": CAST_BF16, "q8": Q8}
CODEC_MODES = {v: k for k, v in MODE_CODECS.items()}
# dtypes each codec may decode to: a cast codec must widen exactly, so only float32/float64.
CODEC_DTYPES = {
    CAST_FP16: (torch.float32, torch.float64),
    CAST_BF16: (torch.float32, torch.float64),
    Q8: (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}
_NARROW = {CAST_FP16: torch.float16, CAST_BF16: torch.bfloat16}
BOUNDS = {
    "fp16": "|err| <= 2^-11 |v| (|v| >= 2^-14), <= 2^-25 below",
    "bf16": "|err| <= 2^-8 |v| (normal range)",
    "q8": "uniform grid: |err| <= step/2; k-means codebook: measured",
}


@dataclass
class LossyStream:
    """What one lossy stream did to its values (reported by compress, checked by the tests)."""

    codec: str
    values: int
    max_abs_error: float
    rms_error: float
    detail: dict


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise CheckpointError(f"unknown values mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def applies(mode: str, dtype: torch.dtype) -> bool:
    """Whether ``mode`` codes tensors of ``dtype`` lossily (e.g. fp16 leaves float16 tensors alone)."""
    return mode in MODE_CODECS and dtype in CODEC_DTYPES[MODE_CODECS[mode]]


def check_values(mode: str, name: str, values: torch.Tensor) -> None:
    """Refuse what a lossy codec cannot represent, naming the tensor (run before packing it).

    Raises:
        CheckpointError: non-finite values, or finite values that would round to infinity.
    """
    if not applies(mode, values.dtype) or values.numel() == 0:
        return
    if not torch.isfinite(values).all():
        raise CheckpointError(f"tensor {name!r} has NaN or infinite trained values; --values {mode} needs finite values "
                              "(compress it losslessly)")
    if mode in ("fp16", "bf16"):
        narrow = _round(values.detach().cpu().reshape(-1), _NARROW[MODE_CODECS[mode]])
        if not torch.isfinite(narrow).all():
            big = float(values.abs().max())
            raise CheckpointError(f"tensor {name!r}: value {big:.6g} overflows {mode} (max {torch.finfo(narrow.dtype).max:.6g}); "
                                  "use --values bf16 or q8, or compress losslessly")


def _round(v: torch.Tensor, narrow: torch.dtype) -> torch.Tensor:
    """Round to ``narrow`` (round-to-nearest-even); float64 goes through float32 first."""
    return v.to(torch.float32).to(narrow)


def encode_lossy(mode: str, raw: bytes, dtype: torch.dtype) -> tuple[int, bytes] | None:
    """Code a values stream of ``dtype`` with ``mode``'s codec; None when the mode does not apply.

    Returns:
        (codec id, stored payload).

    Example:
        >>> codec, payload = encode_lossy("fp16", to_numpy_bytes(torch.randn(100)), torch.float32)
    """
    if not applies(mode, dtype) or not raw:
        return None
    codec = MODE_CODECS[mode]
    size = torch.empty((), dtype=dtype).element_size()
    values = from_bytes(raw, dtype, (len(raw) // size,))
    head = bytes([DTYPE_IDS[dtype]])
    if codec == Q8:
        return codec, encode_q8(values.to(torch.float64).numpy(), dtype, DTYPE_IDS[dtype])
    narrow = to_numpy_bytes(_round(values, _NARROW[codec]))
    inner, payload = encode_stream(narrow, 2)
    return codec, head + bytes([inner]) + payload


def payload_dtype(codec: int, stored: bytes, itemsize: int) -> torch.dtype:
    """The dtype a lossy payload decodes to (its first byte), validated against the codec and itemsize."""
    if not stored:
        raise CodecError(f"{LOSSY_CODEC_NAMES[codec]} payload is empty")
    dtype = DTYPES.get(stored[0])
    if dtype not in CODEC_DTYPES[codec]:
        raise CodecError(f"{LOSSY_CODEC_NAMES[codec]} payload names dtype id {stored[0]}, which this codec cannot decode to")
    if torch.empty((), dtype=dtype).element_size() != itemsize:
        raise CodecError(f"{LOSSY_CODEC_NAMES[codec]} payload decodes to {dtype}, the stream holds {itemsize}-byte items")
    return dtype


def decode_lossy(codec: int, stored: bytes, raw_length: int, itemsize: int) -> bytes:
    """Decode a lossy payload to exactly ``raw_length`` bytes of its dtype; every field is validated."""
    dtype = payload_dtype(codec, stored, itemsize)
    if raw_length % itemsize:
        raise CodecError(f"{raw_length} bytes are not a whole number of {itemsize}-byte values")
    n = raw_length // itemsize
    if codec == Q8:
        out = decode_q8(stored[1:], n, dtype)
    else:
        if len(stored) < 2 or stored[1] not in (RAW, ZSTD, BYTEGROUP_ZSTD):
            raise CodecError(f"{LOSSY_CODEC_NAMES[codec]}: missing or unknown inner codec")
        narrow = decode_stream(stored[1], stored[2:], 2 * n, 2)
        small = from_bytes(narrow, _NARROW[codec], (n,))
        if not torch.isfinite(small).all():
            raise CodecError(f"{LOSSY_CODEC_NAMES[codec]}: a stored value is not finite")
        out = small.to(dtype)  # exact: float16/bfloat16 -> float32/float64 only widens
    return to_numpy_bytes(out)


def describe_lossy(codec: int, stored: bytes | memoryview) -> dict:
    """What ``inspect`` shows for a lossy stream, read from the payload header (no decoding)."""
    stored = bytes(stored[: 2 + 1024 + 8])  # the grid header is all we need
    out: dict = {"values": CODEC_MODES[codec], "bound": BOUNDS[CODEC_MODES[codec]]}
    if stored:
        dt = DTYPES.get(stored[0])
        out["dtype"] = str(dt).removeprefix("torch.") if dt is not None else f"id {stored[0]}"
    if codec == Q8 and len(stored) > 1:
        out.update(describe_grid(stored[1:]))
    return out


def measure(codec: int, stored: bytes, raw: bytes, dtype: torch.dtype) -> LossyStream:
    """Decode ``stored`` with the reader's own code path and compare with the original ``raw``."""
    size = torch.empty((), dtype=dtype).element_size()
    back = decode_lossy(codec, stored, len(raw), size)
    a = from_bytes(raw, dtype, (len(raw) // size,)).to(torch.float64)
    b = from_bytes(back, dtype, (len(raw) // size,)).to(torch.float64)
    err = (a - b).abs()
    detail = describe_lossy(codec, stored)
    return LossyStream(codec=LOSSY_CODEC_NAMES[codec], values=a.numel(), max_abs_error=float(err.max()) if a.numel() else 0.0,
                       rms_error=math.sqrt(float((err * err).mean())) if a.numel() else 0.0, detail=detail)

"""Model 2 (FACTOR) decoding with the compiled kernels: same bits as `mask_decode`, a fraction of the time.

The numpy decoder (`mask_decode.py`) finds each class's entries with whole-array passes and
reads the bits through constriction; this one makes three compiled passes: (1) every entry's
code (dead or class) and the count per class, (2) the ANS bits class by class into one byte
each, (3) one walk that gives every entry the next bit of its class. Passes 2 and 3 have no
branch on the bit values: FACTOR wins on masks of 10-60 % density, where such branches
mispredict about every other entry (VGG16-D: placement 8.0 -> 4.2 ms). The header, level chains and every check are
shared with the numpy decoder, so both accept and reject the same payloads.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from fzpack.codecs.ans_reader import FastBitReader
from fzpack.codecs.mask_ans import TABLE, TABLE_SIZE
from fzpack.codecs.mask_decode import _row_table, _term_luts, read_factor_levels
from fzpack.codecs.mask_models import W_FACTOR, scale_from_code
from fzpack.errors import CodecError

_EMPTY_I64 = np.zeros(0, dtype=np.int64)
_EMPTY_F32 = np.zeros(0, dtype=np.float32)
_TABLE64 = np.asarray(TABLE, dtype=np.int64)


def decode_factor_fast(data: bytes, pos: int, shape: tuple[int, ...], context: np.ndarray | None, count: int,
                       kernels: ModuleType) -> tuple[np.ndarray, np.ndarray]:
    """Decode a FACTOR payload (from byte `pos`, after the model byte) into a flat bool mask.

    Args:
        data: the payload. pos: where the FACTOR header starts.
        shape: the tensor shape. context: float32 |W0| context of that shape, or None.
        count: the number of set entries the container declares (more is rejected early).
        kernels: the compiled `mask_kernels` module.

    Returns:
        (bool array of n entries, equal to `mask_decode.decode_factor_model`'s; the `count` flat
        positions of its set entries, increasing).
    """
    model, dims, n, r = read_factor_levels(data, pos, shape, context is not None, lambda b: FastBitReader(b, kernels))
    luts = _term_luts(model)
    d0 = int(dims[0]) if len(dims) > 1 else 1
    rowlen = n // d0 if d0 else 0
    rowtab = _row_table(luts, dims)
    if W_FACTOR in luts:
        ctx = np.ascontiguousarray(np.asarray(context, dtype=np.float32).reshape(-1))
        wlut, scale = luts[W_FACTOR].astype(np.int64), scale_from_code(model.scale_code)
    else:
        ctx, wlut, scale = _EMPTY_F32, _EMPTY_I64, np.float32(1.0)
    codes = np.empty(n, dtype=np.uint16)
    hist = np.zeros(TABLE_SIZE + 1, dtype=np.int64)
    kernels.factor_classes(ctx, np.float32(scale), wlut, luts[0].astype(np.int64) if 0 in luts else _EMPTY_I64,
                           np.ascontiguousarray(rowtab, dtype=np.int64) if rowtab is not None else _EMPTY_I64,
                           int(model.base), d0, rowlen, codes, hist)
    bits = np.zeros(int(hist[1:].sum()) + 1, dtype=np.uint8)  # + the 0 byte dead entries read
    r.top, r.state, ones = kernels.factor_read_bits(r.words, r.top, r.state, hist, _TABLE64, bits)
    if ones != count:
        raise CodecError(f"decoded mask has {'more than ' if ones > count else ''}{min(ones, count)} entries set, expected {count}")
    out = np.empty(n, dtype=bool)
    kernels.factor_place_bits(codes, bits, hist, out.view(np.uint8))
    r.finish()
    return out, np.flatnonzero(out)

"""Mask codec: entropy-coded boolean masks of trained entries (format: formats/mask-codec-v1.md).

The payload's first byte names the model that coded it:

* 0 ``CONST``  - all entries 0 or all 1 (the container's ``count`` tells which); nothing else.
* 1 ``IID``    - one Bernoulli probability ``round(count / n * 2**16)``, known to the decoder.
* 2 ``FACTOR`` - additive log-odds model with a level per row / column / spatial position and
  per |W0| magnitude bin, levels transmitted as side information (see ``mask_models``).
* 3 ``RAW``    - the bits themselves, 8 per byte (wins only on tiny masks; caps the worst case).
* 4 ``GAPS``   - the positions of the set entries as geometric gaps (``mask_gaps``): the i.i.d.
  model's size, decoded in O(count log(n / count)) instead of O(n).

The encoder tries the models and keeps the cheapest payload: its size plus a small charge for
the decoder's work (`DECODE_READS_PER_BYTE`), so a mask never costs much more than its i.i.d.
bound, structured SNIP/FreezeNet masks cost far less, and a large sparse tensor is not coded with
a model that makes the decoder visit all of its entries to save a few bytes.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from fzpack.codecs.ans_reader import FastBitReader
from fzpack.codecs.mask_ans import BitReader, BitWriter, ratio_prob
from fzpack.codecs.mask_fit import factor_candidates
from fzpack.codecs.mask_decode import decode_factor_model
from fzpack.codecs.mask_gaps import decode_gaps, encode_gaps, gaps_reads
from fzpack.codecs.mask_models import chain_work_limit, class_keys, encode_factor_model, view_dims
from fzpack.errors import CodecError
from fzpack.generator.compiled import mask_kernels_for

MODEL_CONST, MODEL_IID, MODEL_FACTOR, MODEL_RAW, MODEL_GAPS = 0, 1, 2, 3, 4
MAX_ENTRIES = 1 << 34
#: Encoder policy (informative, spec section 8): from this many entries on, the encoder also tries
#: GAPS and charges each payload for its decoding work; below it, it keeps the smallest payload of
#: models 0-3 (so small masks, where every model decodes in microseconds, code as before).
COST_MIN_ENTRIES = 1 << 16
#: One payload byte is worth this many decoder bit reads / entry visits (about 10 us of compiled
#: decoding). FACTOR visits every entry and reads one bit per live entry, IID reads n bits, GAPS
#: about log2(n / count) + 2 bits per set entry.
DECODE_READS_PER_BYTE = 4096
#: The shortest FACTOR payload: model, flags, base (2), one factor's packed step and L, and a
#: non-empty stream (an empty one reads only 0 bits, and a FACTOR payload codes at least one 1).
FACTOR_MIN_BYTES = 7


def _as_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        if not (np.issubdtype(m.dtype, np.integer) and ((m == 0) | (m == 1)).all()):
            raise CodecError("mask must be a boolean array (or an integer array of 0/1)")
        m = m.astype(bool)
    return m


def _check_context(context: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if context is None:
        return None
    c = np.asarray(context)
    if c.shape != tuple(shape):
        raise CodecError(f"mask context shape {c.shape} does not match mask shape {tuple(shape)}")
    if not (np.issubdtype(c.dtype, np.floating) or np.issubdtype(c.dtype, np.integer)):
        raise CodecError("mask context must be a real-valued array")
    return c.astype(np.float32, copy=False)


def _encode_iid(flat: np.ndarray, k: int) -> bytes:
    w = BitWriter()
    w.add(flat, ratio_prob(k, flat.size))
    return bytes([MODEL_IID]) + w.to_bytes()


def encode_mask(mask: np.ndarray, context: np.ndarray | None = None) -> bytes:
    """Encode a boolean mask; ``context`` (e.g. |W0|, same shape) may sharpen the model.

    The decoder must be given the same context (or None if None was given here).
    """
    m = _as_mask(mask)
    ctx = _check_context(context, m.shape)
    flat = m.ravel()
    n, k = flat.size, int(np.count_nonzero(flat))
    if n > MAX_ENTRIES:
        raise CodecError(f"mask has {n} entries, more than the codec supports")
    if k == 0 or k == n:
        return bytes([MODEL_CONST])
    raw = bytes([MODEL_RAW]) + np.packbits(flat, bitorder="little").tobytes()
    charge = n >= COST_MIN_ENTRIES
    # (payload, decoder work in bit reads / entry visits)
    options = [(_encode_iid(flat, k), n), (raw, n // 64)]
    if charge:
        options.append((bytes([MODEL_GAPS]) + encode_gaps(flat, k), gaps_reads(n, k)))

    def cost(o: tuple[bytes, int]) -> tuple[float, int]:  # ties: lowest model id
        return len(o[0]) + (o[1] / DECODE_READS_PER_BYTE if charge else 0), o[0][0]

    # A FACTOR payload is at least FACTOR_MIN_BYTES long and its decoder visits all n entries: when
    # an option already costs less than that, fitting the model (most of the encoding time of large
    # sparse masks) cannot change the choice, so it is skipped.
    if not charge or cost(min(options, key=cost))[0] >= FACTOR_MIN_BYTES + n / DECODE_READS_PER_BYTE:
        for model, bins in factor_candidates(flat, m.shape, ctx):
            live = int(np.count_nonzero(class_keys(model, view_dims(m.shape), bins) >= 0)) if charge else 0
            options.append((bytes([MODEL_FACTOR]) + encode_factor_model(model, flat, m.shape, bins), n + live))
    return min(options, key=cost)[0]


def _check_shape(shape) -> tuple[tuple[int, ...], int]:
    try:
        dims = tuple(operator.index(d) for d in shape)
    except (TypeError, ValueError):
        raise CodecError("mask shape must be a tuple of integers") from None
    if any(d < 0 for d in dims) or len(dims) > 16:
        raise CodecError(f"invalid mask shape {dims}")
    n = math.prod(dims)
    if n > MAX_ENTRIES:
        raise CodecError(f"mask shape {dims} has too many entries")
    return dims, n


def decode_mask(
    payload: bytes, shape: tuple[int, ...], count: int, context: np.ndarray | None = None
) -> np.ndarray:
    """Decode a payload into a bool array of ``shape`` with exactly ``count`` True entries."""
    return decode_mask_positions(payload, shape, count, context)[0]


def check_call(payload: bytes, shape: tuple[int, ...], count: int) -> tuple[bytes, tuple[int, ...], int, int]:
    """The argument checks every decoder makes first (spec section 7): (bytes, dims, n, count) or CodecError.

    Example:
        >>> check_call(bytes(1), (2, 3), 0)[1:]
        ((2, 3), 6, 0)
    """
    dims, n = _check_shape(shape)
    if not isinstance(count, (int, np.integer)) or not 0 <= int(count) <= n:
        raise CodecError(f"mask count {count!r} out of range for {n} entries")
    count = int(count)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise CodecError(f"mask payload must be bytes, not {type(payload).__name__}")
    data = bytes(payload)
    # Refuse early what no valid encoding can reach: <= 16 bits per coded bit, bounded level
    # symbols, and a header of at most a few kilobytes.
    if not data or len(data) > 2 * (n + chain_work_limit(n)) + 8192:
        raise CodecError(f"mask payload length {len(data)} impossible for shape {dims}")
    return data, dims, n, count


def decode_mask_positions(
    payload: bytes, shape: tuple[int, ...], count: int, context: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a payload; also return the flat positions of its True entries (what a restore writes to).

    The GAPS and compiled FACTOR decoders find the positions as they decode, which spares a pass
    over the whole mask.

    Args:
        payload: the mask payload.
        shape: the tensor shape.
        count: the number of True entries the container declares.
        context: the float32 |W0| context (same shape), or None.

    Returns:
        (bool array of ``shape``, int64 array of the ``count`` flat positions in increasing order).

    Example:
        >>> mask, pos = decode_mask_positions(bytes.fromhex("03320802"), (20,), 5)
        >>> pos.tolist()
        [1, 4, 5, 11, 17]
    """
    data, dims, n, count = check_call(payload, shape, count)
    try:
        out = _decode(data, dims, n, count, _check_context(context, dims))
    except CodecError:
        raise
    except Exception as exc:  # safety net: hostile input must never escape as another type
        raise CodecError(f"mask payload undecodable ({type(exc).__name__}: {exc})") from None
    if isinstance(out, tuple):  # the decoder placed exactly `count` entries and knows where
        out, pos = out
    else:
        pos = np.flatnonzero(out)
        if pos.size != count:
            raise CodecError(f"decoded mask has {pos.size} entries set, expected {count}")
    return out.reshape(dims), pos


def _decode(data: bytes, dims, n: int, count: int, context) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    model = data[0]
    if model == MODEL_CONST:
        if len(data) != 1 or count not in (0, n):
            raise CodecError("constant mask payload inconsistent with its count")
        return np.full(n, count == n and n > 0, dtype=bool)
    kernels = mask_kernels_for(n)
    if model == MODEL_IID:
        if count in (0, n):
            raise CodecError("i.i.d. mask payload used for a constant mask")
        r = BitReader(data[1:]) if kernels is None else FastBitReader(data[1:], kernels)
        out = r.read(n, ratio_prob(count, n))
        r.finish()
        return out
    if model == MODEL_FACTOR:
        if count in (0, n):
            raise CodecError("structured mask payload used for a constant mask")
        if kernels is not None:
            from fzpack.codecs.mask_factor_fast import decode_factor_fast

            return decode_factor_fast(data, 1, dims, context, count, kernels)
        return decode_factor_model(data, 1, dims, context)
    if model == MODEL_GAPS:
        if count in (0, n):
            raise CodecError("gap mask payload used for a constant mask")
        # at most 16 bits per coded bit, and at most count * (r + 2) + n / 2**r + count bits
        if len(data) - 1 > 2 * (n + 42 * count) + 8:
            raise CodecError("gap mask payload longer than any valid encoding")
        return decode_gaps(data[1:], n, count, kernels)
    if model == MODEL_RAW:
        if count in (0, n):
            raise CodecError("raw mask payload used for a constant mask")
        if len(data) != 1 + (n + 7) // 8:
            raise CodecError(f"raw mask payload has {len(data) - 1} bytes, expected {(n + 7) // 8}")
        bits = np.unpackbits(np.frombuffer(data, np.uint8, offset=1), bitorder="little")
        if bits[n:].any():
            raise CodecError("raw mask payload has non-zero padding bits")
        return bits[:n].astype(bool)
    raise CodecError(f"unknown mask model id {model}")


def _bern_bits(n: np.ndarray, k: np.ndarray) -> float:
    n = n.astype(np.float64)
    k = k.astype(np.float64)
    ok = (k > 0) & (k < n)
    p = k[ok] / n[ok]
    return float(-(n[ok] * (p * np.log2(p) + (1 - p) * np.log2(1 - p))).sum())


def mask_entropy_bounds(mask: np.ndarray) -> dict:
    """Reference code lengths in bits, all *without* side information.

    ``iid_bits``: n*H(k/n). ``row_bits`` / ``col_bits``: sum over rows (dim 0) / columns (the
    other dims flattened) of len*H(count/len). ``rowcol_bits``: min of the two.
    ``independence_bits``: code length under p_ij = r_i*c_j/k (row x column independence,
    clipped to [1e-9, 1-1e-9]). For 0-/1-D masks the row/column bounds equal the i.i.d. bound.
    """
    m = _as_mask(mask)
    n, k = m.size, int(np.count_nonzero(m))
    iid = _bern_bits(np.array([n]), np.array([k]))
    if m.ndim < 2 or n == 0:
        row = col = indep = iid
    else:
        v = m.reshape(m.shape[0], -1)
        r, c = v.sum(1), v.sum(0)
        row = _bern_bits(np.full(r.size, v.shape[1]), r)
        col = _bern_bits(np.full(c.size, v.shape[0]), c)
        pr = np.clip(np.outer(r, c) / max(k, 1), 1e-9, 1 - 1e-9)
        indep = float(-(np.log2(pr[v]).sum() + np.log2(1 - pr[~v]).sum()))
    return {"n": n, "k": k, "iid_bits": iid, "row_bits": row, "col_bits": col,
            "rowcol_bits": min(row, col), "independence_bits": indep}

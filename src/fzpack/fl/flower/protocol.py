"""How fzpack's base and update payloads ride in Flower messages (protocol ``fzpack-flower/1``).

A train (or evaluate) message from the server carries, besides the strategy's usual ``config``
ConfigRecord, one ArrayRecord under the key ``fzpack`` holding one or two opaque byte Arrays
(``dtype="uint8"``, ``shape=(n,)``, their own ``stype``, so nothing in Flower ever calls
``.numpy()`` on them):

=========  =====================  =============================================================
key        stype                  holds
=========  =====================  =============================================================
``base``   ``x-fzpack-base/1``    the base's lossless ``.fzp`` bytes - only in the first message
                                  a node gets, or after the node said it lacks the base
``values`` ``x-fzpack-update/1``  the global values as an update payload (formats/fl-update-v1.md),
                                  a DELTA payload when the node holds the previous global values
=========  =====================  =============================================================

and these ``config`` entries: ``fzpack.base`` (the base fingerprint, hex: the key the client
checks the base it holds against), ``fzpack.uplink`` (``lossless`` | ``fp16`` | ``bf16`` |
``q8``), ``fzpack.uplink-delta`` (bool) and ``fzpack.weight-key`` (the MetricRecord entry that
is the example count, FedAvg's ``weighted_by_key``).

A client's train reply carries the ArrayRecord ``fzpack`` with one Array ``update``
(``x-fzpack-update/1``: its trained values and example count) next to its MetricRecord. A client
that cannot decode the values - it holds no base, another base, or other previous values than a
delta names - replies with only the ConfigRecord ``fzpack.need`` (``{"need": "base"}`` or
``{"need": "values"}``); the server then resends that node the base and the full values in the
same round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fzpack.errors import FzpackError, PayloadError
from fzpack.fl.base import Base

__all__ = [
    "BASE_KEY", "CONFIG_BASE", "CONFIG_UPLINK", "CONFIG_UPLINK_DELTA", "CONFIG_WEIGHT_KEY", "NEED_KEY", "PROTOCOL",
    "RECORD_KEY", "STYPE_BASE", "STYPE_UPDATE", "UPDATE_KEY", "VALUES_KEY", "bytes_array", "array_bytes",
    "record_values", "values_record",
]

PROTOCOL = "fzpack-flower/1"
STYPE_BASE = "x-fzpack-base/1"
STYPE_UPDATE = "x-fzpack-update/1"
RECORD_KEY = "fzpack"  # the ArrayRecord carrying base / values / update
BASE_KEY = "base"
VALUES_KEY = "values"  # server -> client: the global values
UPDATE_KEY = "update"  # client -> server: the client's values
NEED_KEY = "fzpack.need"  # ConfigRecord of a client that cannot decode: {"need": "base" | "values"}
CONFIG_BASE = "fzpack.base"
CONFIG_UPLINK = "fzpack.uplink"
CONFIG_UPLINK_DELTA = "fzpack.uplink-delta"
CONFIG_WEIGHT_KEY = "fzpack.weight-key"
VALUE_MODES = ("lossless", "fp16", "bf16", "q8")


def bytes_array(data: bytes, stype: str) -> Array:
    """An opaque byte payload as a Flower Array (``uint8``, its own ``stype``; never ``.numpy()``-ed)."""
    return Array(dtype="uint8", shape=(len(data),), stype=stype, data=bytes(data))


def array_bytes(array: Array, stype: str) -> bytes:
    """The payload of an Array made by :func:`bytes_array`; refuses any other serialisation."""
    if not isinstance(array, Array) or array.stype != stype:
        got = array.stype if isinstance(array, Array) else type(array).__name__
        raise PayloadError(f"expected an Array of stype {stype!r}, got {got!r}")
    if array.dtype != "uint8" or tuple(array.shape) != (len(array.data),):
        raise PayloadError(f"{stype} Array must be uint8 of shape ({len(array.data)},), got {array.dtype} {array.shape}")
    return array.data


def values_record(base: Base, values: Sequence[torch.Tensor]) -> ArrayRecord:
    """Values in the base's layout order as a plain ArrayRecord keyed by the entries' labels.

    This is what the strategy passes around as its ``arrays`` (``Result.arrays``, the
    ``evaluate_fn`` argument) and what a ClientApp's train function receives (after
    :func:`~fzpack.fl.flower.fzpack_mod` decoded the payload) and returns.

    Example:
        >>> record = values_record(base, base.values_of(model))
    """
    out = ArrayRecord()
    for e, v in zip(base.layout, base.check_values(values)):
        t = v.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            raise FzpackError(f"{e.label}: bfloat16 values have no numpy form; keep them in fzpack payloads")
        out[e.label] = Array(t.numpy())
    return out


def record_values(record: ArrayRecord, base: Base) -> list[torch.Tensor]:
    """The values of an ArrayRecord made by :func:`values_record`, checked against the layout.

    Raises:
        FzpackError: the record's keys, dtypes or shapes are not the base's layout.

    Example:
        >>> base.write_into(model, record_values(msg.content["arrays"], base))
    """
    labels = [e.label for e in base.layout]
    if list(record.keys()) != labels:
        raise FzpackError(f"the ArrayRecord's keys are not the base's layout: expected {labels[:3]}..., "
                          f"got {list(record.keys())[:3]}...")
    # np.require keeps 0-d arrays 0-d (np.ascontiguousarray would make scales 1-d)
    return base.check_values([torch.from_numpy(np.require(record[k].numpy(), requirements=["C", "W"])) for k in labels])


def need_reply_content(what: str, base_hex: str) -> RecordDict:
    """The content of a reply saying the node cannot decode the message (``what``: base | values)."""
    return RecordDict({NEED_KEY: ConfigRecord({"need": what, "base": base_hex})})

"""The ClientApp side: a Flower mod that decodes fzpack messages on the way in and encodes the reply.

``ClientApp(mods=[fzpack_mod])``: for a message carrying the ``fzpack`` ArrayRecord (protocol.py),
the mod

1. stores the base when the message carries one (in ``context.state``, which Flower keeps for
   the node across rounds, so the base arrives once),
2. decodes the global values against that base (a delta against the values the node holds) and
   hands the train / evaluate function a plain ArrayRecord of them, keyed by layout labels,
   under the strategy's arrays key (``"arrays"`` by default) - the function never sees a payload,
3. encodes the function's reply values (the same ArrayRecord form) as an update payload with the
   example count from its MetricRecord, lossless or lossy and full or delta as the server's
   config asks.

A node that cannot decode (no base, another base, a delta against values it does not hold)
replies ``fzpack.need`` and the server resends base and full values. Messages without the
``fzpack`` record (a dense run) pass through untouched.

Example:
    >>> app = ClientApp(mods=[fzpack_mod])
    >>> @app.train()
    ... def train(msg, context):
    ...     model, base = client_model(msg, context)          # training form, global values loaded
    ...     n = local_training(model)
    ...     return Message(RecordDict({"arrays": values_record(base, base.values_of(model)),
    ...                                "metrics": MetricRecord({"num-examples": n})}), reply_to=msg)
"""

from __future__ import annotations

import copy
from collections import OrderedDict

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from torch import nn

from fzpack.errors import FzpackError, PayloadError
from fzpack.fl.base import Base
from fzpack.fl.flower.protocol import (BASE_KEY, CONFIG_BASE, CONFIG_UPLINK, CONFIG_UPLINK_DELTA, CONFIG_WEIGHT_KEY,
                                       RECORD_KEY, STYPE_BASE, STYPE_UPDATE, UPDATE_KEY, VALUE_MODES, VALUES_KEY,
                                       array_bytes, bytes_array, need_reply_content, record_values, values_record)
from fzpack.fl.payload import decode_update, encode_update, read_header, values_digest

__all__ = ["HELD_KEY", "STATE_KEY", "client_base", "client_model", "fzpack_mod"]

STATE_KEY = "fzpack.client"  # context.state ConfigRecord: {"base": the .fzp bytes}
HELD_KEY = "fzpack.held"  # context.state ArrayRecord: the global values the node last decoded (values_record form)
CONFIG_ARRAYS_KEY = "fzpack.arrays-key"
_BASES: OrderedDict[bytes, Base] = OrderedDict()  # parsed bases of this process, by the bytes' identity


def _parse_base(data: bytes) -> Base:
    key = bytes(data)
    base = _BASES.get(key)
    if base is None:
        base = Base.from_bytes(key)
        _BASES[key] = base
        while len(_BASES) > 2:
            _BASES.popitem(last=False)
    return base


def _state(context: Context) -> ConfigRecord:
    rec = context.state.config_records.get(STATE_KEY)
    if rec is None:
        rec = ConfigRecord()
        context.state[STATE_KEY] = rec
    return rec


def _held(context: Context, base: Base) -> list | None:
    record = context.state.array_records.get(HELD_KEY)
    if record is None:
        return None
    try:
        return record_values(record, base)
    except FzpackError:  # values of another layout: as good as none
        return None


def client_base(context: Context) -> Base | None:
    """The base this node holds (stored by :func:`fzpack_mod` from the message that carried it), or None."""
    data = context.state.config_records.get(STATE_KEY, {}).get("base")
    return _parse_base(data) if isinstance(data, bytes) else None


def client_model(msg: Message, context: Context, *, arrays_key: str = "arrays", device: str = "cpu") -> tuple[nn.Module, Base]:
    """The training-form model of the node's base with the message's global values, and the base.

    For a base whose checkpoint names its architecture (``Base.from_model(model, arch=...)``)
    the module is rebuilt by ``fzpack.load_model``: the client needs no model code.

    Example:
        >>> model, base = client_model(msg, context)
    """
    from fzpack.loading import load_model

    base = client_base(context)
    if base is None:
        raise FzpackError("this node holds no fzpack base: is fzpack_mod in the ClientApp's mods?")
    model = load_model(base.to_bytes(), frozen_layers=True, device=device)
    base.write_into(model, record_values(msg.content.array_records[arrays_key], base))
    return model.train(), base


def _server_config(content: RecordDict) -> ConfigRecord:
    for rec in content.config_records.values():
        if CONFIG_BASE in rec:
            return rec
    raise PayloadError(f"an fzpack message without the {CONFIG_BASE!r} config entry")


def fzpack_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: decode the fzpack base / values of a message, encode the reply's values.

    Put it in ``ClientApp(mods=[fzpack_mod])``; see the module docstring for what it does.
    """
    if msg.has_error() or not msg.has_content() or RECORD_KEY not in msg.content.array_records:
        return call_next(msg, context)
    content = msg.content
    config = _server_config(content)
    want = str(config[CONFIG_BASE])
    incoming = content.array_records[RECORD_KEY]
    state = _state(context)
    if BASE_KEY in incoming:
        data = array_bytes(incoming[BASE_KEY], STYPE_BASE)
        if _parse_base(data).fingerprint_hex != want:
            raise PayloadError(f"the base in this message is not the one its config names ({want[:16]}...)")
        if state.get("base") != data:
            state["base"] = data
            context.state.array_records.pop(HELD_KEY, None)  # values of another base
    base = client_base(context)
    if base is None or base.fingerprint_hex != want:
        return Message(need_reply_content("base", want), reply_to=msg)

    payload = array_bytes(incoming[VALUES_KEY], STYPE_UPDATE)
    held = _held(context, base)
    header = read_header(payload)
    if header.delta and (held is None or values_digest(base, held) != header.previous):
        return Message(need_reply_content("values", want), reply_to=msg)
    update = decode_update(payload, base, previous=held)
    context.state[HELD_KEY] = values_record(base, update.values)  # exactly what was decoded: a delta's previous

    arrays_key = str(config.get(CONFIG_ARRAYS_KEY, "arrays"))
    inner = RecordDict({k: v for k, v in content.items() if k != RECORD_KEY})
    inner[arrays_key] = values_record(base, update.values)
    decoded = copy.copy(msg)  # the same metadata, the decoded content; the received message stays as it came
    decoded.content = inner
    reply = call_next(decoded, context)

    if (reply.has_error() or not reply.has_content() or arrays_key not in reply.content.array_records
            or msg.metadata.message_type.split(".")[0] != MessageType.TRAIN):
        return reply
    values = record_values(reply.content.array_records[arrays_key], base)
    weight_key = str(config.get(CONFIG_WEIGHT_KEY, "num-examples"))
    examples = _examples(reply.content, weight_key)
    mode = str(config.get(CONFIG_UPLINK, "lossless"))
    if mode not in VALUE_MODES:
        raise PayloadError(f"unknown uplink value mode {mode!r}")
    up = encode_update(values, base, round=int(config.get("server-round", update.round)), examples=examples, values=mode,
                       delta_from=update.values if bool(config.get(CONFIG_UPLINK_DELTA, False)) else None)
    out = RecordDict({k: v for k, v in reply.content.items() if k != arrays_key})
    out[RECORD_KEY] = ArrayRecord({UPDATE_KEY: bytes_array(up, STYPE_UPDATE)})
    return Message(out, reply_to=msg)


def _examples(content: RecordDict, key: str) -> int:
    for rec in content.metric_records.values():
        if key in rec:
            v = rec[key]
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise FzpackError(f"the reply's {key!r} must be an example count (an integer >= 0), got {v!r}")
            return v
    raise FzpackError(f"the train reply has no MetricRecord entry {key!r} (the FedAvg weight)")

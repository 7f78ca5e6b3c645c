"""Federated learning with frozen random weights: share the base once, then only trained values.

In a federated run of a FreezeNet, DCTpS or LCResNet model, the seed, the architecture and the
mask (or the seeded support, or the bank) never change. They are the **base**, sent once as a
`.fzp` file; after that every message, uplink and downlink, is an **update payload** carrying
only the trained values (formats/fl-update-v1.md): FreezeNet's K masked entries, DCTpS's alphas
and sparse offsets, LCResNet's 1x1 weights, BatchNorm and classifier.

Example:
    >>> from fzpack import fl
    >>> base = fl.Base.from_model(model)                       # server, round 0
    >>> blob = base.to_bytes()                                 # sent once to each client
    >>> # client: model = fzpack.load_into(Net(), blob, trainable=True); train ...
    >>> up = fl.encode_update(model, base, round=1, examples=600)
    >>> # server:
    >>> updates = [fl.decode_update(p, base) for p in uplinks]
    >>> down = fl.encode_update(fl.fedavg(updates), base, round=1)
    >>> # client: fl.apply_update(model, fl.decode_update(down, base))
    >>> # a late client: fzpack.load_into(Net(), blob, update=down) - never dense weights
"""

from fzpack.errors import PayloadError
from fzpack.fl.aggregate import average, dense_fedavg, fedavg
from fzpack.fl.base import Base
from fzpack.fl.layout import PART_PLAIN, PART_SCALE, PART_TRAINED, LayoutEntry
from fzpack.fl.payload import (PayloadHeader, Update, apply_update, decode_update, encode_update, read_header,
                               values_digest)

__all__ = ["Base", "LayoutEntry", "PART_PLAIN", "PART_SCALE", "PART_TRAINED", "PayloadError", "PayloadHeader", "Update",
           "apply_update", "average", "decode_update", "dense_fedavg", "encode_update", "fedavg", "read_header",
           "values_digest"]

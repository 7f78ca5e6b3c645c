"""Flower integration: fzpack bases and update payloads on Flower's Message API (needs ``fzpack[fl]``).

``import fzpack`` and ``import fzpack.fl`` never import Flower; this subpackage does, so import it
only where Flower runs (``from fzpack.fl import flower``).

* :func:`fzpack_mod` - a ClientApp mod: stores the base the first message brings, decodes the
  global values into a plain ArrayRecord for the train / evaluate function, encodes its reply.
* :class:`FzpackFedAvg` - FedAvg that sends each node the base once and then only values (an
  ``x-fzpack-update/1`` Array, lossless or fp16 / bf16 / q8 per direction, optionally deltas),
  aggregated with ``fzpack.fl.fedavg`` (bit-identical to dense FedAvg on the trained entries),
  recording every message's bytes.
* :class:`MeteredFedAvg` - Flower's FedAvg unchanged, with the same byte records (dense baseline).
* :func:`values_record` / :func:`record_values` - values in layout order <-> ArrayRecord.

Example:
    >>> # server_app.py
    >>> base = fl.Base.from_model(model, arch={"name": "lenet5-caffe", "config": {}})
    >>> strategy = flower.FzpackFedAvg(base, uplink="fp16", fraction_evaluate=0.0)
    >>> result = strategy.start(grid, num_rounds=3, evaluate_fn=central_eval)
    >>> # client_app.py
    >>> app = ClientApp(mods=[flower.fzpack_mod])
    >>> model, base = flower.client_model(msg, context)    # in @app.train()
"""

try:
    import flwr  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised where Flower is absent
    raise ImportError("fzpack.fl.flower needs Flower: pip install 'fzpack[fl]' (flwr[simulation]==1.41.0)") from e

from fzpack.fl.flower.client import HELD_KEY, STATE_KEY, client_base, client_model, fzpack_mod
from fzpack.fl.flower.protocol import (PROTOCOL, RECORD_KEY, STYPE_BASE, STYPE_UPDATE, array_bytes, bytes_array,
                                       record_values, values_record)
from fzpack.fl.flower.server import FzpackFedAvg, MeteredFedAvg, summarize

__all__ = ["FzpackFedAvg", "HELD_KEY", "MeteredFedAvg", "PROTOCOL", "RECORD_KEY", "STATE_KEY", "STYPE_BASE", "STYPE_UPDATE",
           "array_bytes", "bytes_array", "client_base", "client_model", "fzpack_mod", "record_values", "summarize",
           "values_record"]

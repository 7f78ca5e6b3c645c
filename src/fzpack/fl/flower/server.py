"""The ServerApp side: FedAvg that sends the base once and then only values, aggregated by ``fzpack.fl.fedavg``.

:class:`FzpackFedAvg` is Flower's message-API ``FedAvg`` with its four message methods replaced;
``start()`` (rounds, timeouts, ``evaluate_fn``, ``Result``) is Flower's own. The ``arrays`` it
passes around - ``initial_arrays``, the ``evaluate_fn`` argument, ``Result.arrays`` - are the
global values as a plain ArrayRecord keyed by layout labels (``values_record``); on the wire
they are update payloads (protocol.py).

Per node, the server remembers whether the node holds the base and which values (by digest) it
holds. A message carries the base only when the node does not hold it (its first message), and
a DELTA payload only when ``downlink_delta`` is on and the node holds the previous global values;
a node that answers ``fzpack.need`` (it lost its state, or holds other values) gets base and full
values again in the same round. The uplink payloads are decoded against the values each node
was sent and averaged by ``fzpack.fl.fedavg`` in ascending node-id order, so the aggregate is
bit-identical to dense FedAvg restricted to the trained entries and does not depend on the
order replies arrive in.

Every message's bytes are recorded in :attr:`FzpackFedAvg.rounds` (``ArrayRecord.count_bytes()``
and the payload lengths); :class:`MeteredFedAvg` records the same for Flower's unchanged FedAvg
over plain float32 ArrayRecords, the dense baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from logging import INFO, WARNING
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Result
from flwr.serverapp.strategy.strategy_utils import sample_nodes
from flwr.supercore import log

from fzpack.errors import FzpackError
from fzpack.fl.aggregate import fedavg
from fzpack.fl.base import Base
from fzpack.fl.flower.client import CONFIG_ARRAYS_KEY
from fzpack.fl.flower.protocol import (BASE_KEY, CONFIG_BASE, CONFIG_UPLINK, CONFIG_UPLINK_DELTA, CONFIG_WEIGHT_KEY,
                                       NEED_KEY, RECORD_KEY, STYPE_BASE, STYPE_UPDATE, UPDATE_KEY, VALUE_MODES, VALUES_KEY,
                                       array_bytes, bytes_array, record_values, values_record)
from fzpack.fl.payload import Update, decode_update, encode_update, values_digest

__all__ = ["FzpackFedAvg", "MeteredFedAvg", "summarize"]


def summarize(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Totals of a round's per-message byte records (``record_bytes``, ``payload_bytes``, ``base_bytes``)."""
    keys = ("record_bytes", "payload_bytes", "base_bytes")
    return {"messages": len(entries), **{k: sum(int(e.get(k, 0)) for e in entries) for k in keys}}


class _RoundLog:
    """Per-round byte and time records shared by both strategies."""

    rounds: list[dict[str, Any]]

    def _begin(self, server_round: int) -> dict[str, Any]:
        if not self.rounds or self.rounds[-1]["round"] != server_round:
            self.rounds.append({"round": server_round, "downlink": [], "uplink": [], "resent": 0, "failures": 0,
                                "_t0": time.perf_counter(), "seconds": 0.0})
        return self.rounds[-1]

    def _end(self, rec: dict[str, Any]) -> None:
        rec["seconds"] = time.perf_counter() - rec["_t0"]

    def round_summary(self, server_round: int) -> dict[str, Any]:
        """One round's totals: ``{"round", "seconds", "downlink": {...}, "uplink": {...}, "resent", "failures"}``."""
        for rec in self.rounds:
            if rec["round"] == server_round:
                return {"round": server_round, "seconds": rec["seconds"], "downlink": summarize(rec["downlink"]),
                        "uplink": summarize(rec["uplink"]), "resent": rec["resent"], "failures": rec["failures"]}
        raise KeyError(server_round)


def _array_record_entry(node: int, kind: str, rec: ArrayRecord) -> dict[str, Any]:
    return {"node": node, "kind": kind, "record_bytes": rec.count_bytes(),
            "payload_bytes": sum(len(a.data) for a in rec.values()), "base_bytes": 0}


class MeteredFedAvg(_RoundLog, FedAvg):
    """Flower's FedAvg, unchanged, recording each message's ArrayRecord bytes: the dense baseline.

    Example:
        >>> strategy = MeteredFedAvg(fraction_evaluate=0.0)
        >>> strategy.start(grid, ArrayRecord(model.state_dict()), num_rounds=3)
        >>> strategy.round_summary(1)["uplink"]["record_bytes"]
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rounds = []

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        rec = self._begin(server_round)
        messages = list(super().configure_train(server_round, arrays, config, grid))
        rec["downlink"] += [_array_record_entry(m.metadata.dst_node_id, "train", arrays) for m in messages]
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        rec = self._begin(server_round)
        replies = list(replies)
        for r in replies:
            if r.has_error():
                rec["failures"] += 1
                continue
            for ar in r.content.array_records.values():
                rec["uplink"].append(_array_record_entry(r.metadata.src_node_id, "train", ar))
        out = super().aggregate_train(server_round, replies)
        self._end(rec)
        return out


class FzpackFedAvg(_RoundLog, FedAvg):
    """FedAvg over fzpack payloads: the base once per node, then only trained values, both directions.

    Args:
        base: the run's base (``fzpack.fl.Base.from_model(model, arch=...)``: with ``arch`` the
            clients rebuild the model from the base alone).
        downlink: how the global values travel: ``lossless`` (default) or ``fp16`` / ``bf16`` /
            ``q8`` (weights lossy, the rest exact; formats/fl-update-v1.md section 5.3).
        uplink: the same for the clients' values.
        downlink_delta: send the global values as a delta from the values the node holds.
        uplink_delta: clients send their values as a delta from the global values they got.
        keep_payloads: keep every uplink payload in :attr:`uplinks` (``{round: {node: bytes}}``).
        **kwargs: ``FedAvg``'s (``fraction_train``, ``min_available_nodes``, ``weighted_by_key``, ...).

    Attributes:
        base: the base.
        global_values: the current global values (exact: ``fedavg`` of the decoded uplinks).
        rounds: per round, every message's bytes (:meth:`round_summary` totals them).

    Example:
        >>> strategy = FzpackFedAvg(base, uplink="fp16", fraction_evaluate=0.0)
        >>> result = strategy.start(grid, num_rounds=3, evaluate_fn=central_eval)
        >>> final = record_values(result.arrays, base)
    """

    def __init__(self, base: Base, *, downlink: str = "lossless", uplink: str = "lossless", downlink_delta: bool = False,
                 uplink_delta: bool = False, keep_payloads: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for what, mode in (("downlink", downlink), ("uplink", uplink)):
            if mode not in VALUE_MODES:
                raise FzpackError(f"{what} must be one of {', '.join(VALUE_MODES)}, got {mode!r}")
        self.base = base
        self.downlink, self.uplink = downlink, uplink
        self.downlink_delta, self.uplink_delta = bool(downlink_delta), bool(uplink_delta)
        self.keep_payloads = keep_payloads
        self.global_values: list[torch.Tensor] = base.values()
        self.rounds = []
        self.uplinks: dict[int, dict[int, bytes]] = {}
        self._with_base: set[int] = set()  # nodes known to hold the base
        self._held: dict[int, bytes] = {}  # node -> digest of the values it holds
        self._known: dict[bytes, list[torch.Tensor]] = {}  # digest -> values (as the nodes decoded them)
        self._sent: dict[int, bytes] = {}  # node -> digest of the values sent to it in the current phase
        self._phase: tuple[int, str, list[torch.Tensor], ConfigRecord] | None = None
        self._cache: dict[bytes | None, tuple[bytes, bytes]] = {}
        self._grid: Grid | None = None
        self._timeout: float | None = None

    def summary(self) -> None:
        super().summary()
        log(INFO, "\t└──> fzpack: base %s, %s values (%s B once per node); downlink %s%s, uplink %s%s",
            self.base.fingerprint_hex[:12], f"{self.base.trained_count:,}", f"{len(self.base.to_bytes()):,}",
            self.downlink, " delta" if self.downlink_delta else "", self.uplink, " delta" if self.uplink_delta else "")

    def initial_arrays(self) -> ArrayRecord:
        """The base's own values as the strategy's ArrayRecord (the round-0 global model)."""
        return values_record(self.base, self.base.values())

    def start(self, grid: Grid, initial_arrays: ArrayRecord | None = None, num_rounds: int = 3, timeout: float = 3600,
              train_config: ConfigRecord | None = None, evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None) -> Result:
        """Flower's ``Strategy.start``; ``initial_arrays`` defaults to the base's own values."""
        self._grid, self._timeout = grid, timeout
        arrays = initial_arrays if initial_arrays is not None else self.initial_arrays()
        return super().start(grid, arrays, num_rounds=num_rounds, timeout=timeout, train_config=train_config,
                             evaluate_config=evaluate_config, evaluate_fn=evaluate_fn)

    # -- server -> client -------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self._configure(server_round, arrays, config, grid, MessageType.TRAIN, self.fraction_train, self.min_train_nodes)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self._configure(server_round, arrays, config, grid, MessageType.EVALUATE, self.fraction_evaluate,
                               self.min_evaluate_nodes)

    def _configure(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid, kind: str,
                   fraction: float, min_nodes: int) -> list[Message]:
        if fraction == 0.0:
            return []
        self._grid = grid
        self._begin(server_round)
        values = record_values(arrays, self.base)
        self.global_values = values
        num_nodes = int(len(list(grid.get_node_ids())) * fraction)
        node_ids, all_nodes = sample_nodes(grid, self.min_available_nodes, max(num_nodes, min_nodes))
        log(INFO, "configure_%s: Sampled %s nodes (out of %s)", kind, len(node_ids), len(all_nodes))
        config["server-round"] = server_round
        self._phase, self._cache, self._sent = (server_round, kind, values, config), {}, {}
        return [self._message(node, kind) for node in sorted(node_ids)]

    def _message(self, node: int, kind: str, resend: bool = False) -> Message:
        assert self._phase is not None
        server_round, _, values, config = self._phase
        record, entry = ArrayRecord(), {"node": node, "kind": "resend" if resend else kind, "base_bytes": 0}
        if node not in self._with_base:
            blob = self.base.to_bytes()
            record[BASE_KEY] = bytes_array(blob, STYPE_BASE)
            entry["base_bytes"] = len(blob)
            self._held.pop(node, None)  # a client that (re)stores a base drops its held values
        prev = self._held.get(node) if self.downlink_delta else None
        if prev is not None and prev not in self._known:
            prev = None
        payload, digest = self._downlink_payload(server_round, values, prev)
        record[VALUES_KEY] = bytes_array(payload, STYPE_UPDATE)
        entry.update(record_bytes=record.count_bytes(), payload_bytes=len(payload), delta=prev is not None)
        self._sent[node] = digest
        self.rounds[-1]["downlink"].append(entry)
        cfg = ConfigRecord(dict(config))
        cfg[CONFIG_BASE] = self.base.fingerprint_hex
        cfg[CONFIG_UPLINK] = self.uplink
        cfg[CONFIG_UPLINK_DELTA] = self.uplink_delta
        cfg[CONFIG_WEIGHT_KEY] = self.weighted_by_key
        cfg[CONFIG_ARRAYS_KEY] = self.arrayrecord_key
        content = RecordDict({self.configrecord_key: cfg, RECORD_KEY: record})
        return Message(content=content, dst_node_id=node, message_type=kind)

    def _downlink_payload(self, server_round: int, values: list[torch.Tensor], prev: bytes | None) -> tuple[bytes, bytes]:
        """(payload, digest of the values the node will decode from it); one encoding per phase and previous values."""
        if prev not in self._cache:
            previous = self._known[prev] if prev is not None else None
            payload = encode_update(values, self.base, round=server_round, values=self.downlink, delta_from=previous)
            decoded = decode_update(payload, self.base, previous=previous).values
            digest = values_digest(self.base, decoded)
            self._known[digest] = decoded
            self._cache[prev] = (payload, digest)
        return self._cache[prev]

    # -- client -> server -------------------------------------------------------------------------
    def _settle(self, replies: Iterable[Message]) -> list[Message]:
        """Resend base + full values to nodes that asked (once), and note what every answering node now holds."""
        assert self._phase is not None
        rec = self.rounds[-1]
        out, again = [], []
        for r in replies:
            node = r.metadata.src_node_id
            if not r.has_error() and NEED_KEY in r.content.config_records:
                need = r.content.config_records[NEED_KEY].get("need")
                log(INFO, "node %s needs the %s: resending base and full values", node, need)
                if need == "base":
                    self._with_base.discard(node)
                self._held.pop(node, None)
                again.append(node)
            else:
                out.append(r)
        if again and self._grid is not None:
            rec["resent"] += len(again)
            messages = [self._message(node, self._phase[1], resend=True) for node in again]
            for r in self._grid.send_and_receive(messages, timeout=self._timeout):
                if not r.has_error() and NEED_KEY in r.content.config_records:
                    log(WARNING, "node %s still cannot decode after a resend; dropped this round", r.metadata.src_node_id)
                    rec["failures"] += 1
                else:
                    out.append(r)
        for r in out:
            node = r.metadata.src_node_id
            if r.has_error():
                rec["failures"] += 1
                self._held.pop(node, None)
            elif node in self._sent:
                self._with_base.add(node)
                self._held[node] = self._sent[node]
        held = set(self._held.values())
        self._known = {d: v for d, v in self._known.items() if d in held or d in self._sent.values()}
        return sorted(out, key=lambda m: m.metadata.src_node_id)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        rec = self._begin(server_round)
        valid, _ = self._check_and_log_replies(self._settle(replies), is_train=True, validate=False)
        updates: list[Update] = []
        contents = []
        for r in valid:
            node = r.metadata.src_node_id
            if RECORD_KEY not in r.content.array_records or node not in self._sent:
                log(WARNING, "node %s replied without an fzpack update; ignored", node)
                rec["failures"] += 1
                continue
            ar = r.content.array_records[RECORD_KEY]
            payload = array_bytes(ar[UPDATE_KEY], STYPE_UPDATE)
            update = decode_update(payload, self.base, previous=self._known[self._sent[node]])
            updates.append(update)
            contents.append(r.content)
            rec["uplink"].append({"node": node, "kind": "train", "record_bytes": ar.count_bytes(), "payload_bytes": len(payload),
                                  "base_bytes": 0, "examples": update.examples, "delta": update.delta, "lossy": update.lossy})
            if self.keep_payloads:
                self.uplinks.setdefault(server_round, {})[node] = payload
        if not updates:
            self._end(rec)
            return None, None
        self.global_values = fedavg(updates)
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key) if contents else None
        self._end(rec)
        return values_record(self.base, self.global_values), metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return super().aggregate_evaluate(server_round, self._settle(replies))

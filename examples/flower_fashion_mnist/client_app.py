"""ClientApp: local training on this node's partition; fzpack_mod turns payloads into ArrayRecords and back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

import task
from fzpack import fl
from fzpack.fl import flower

app = ClientApp(mods=[flower.fzpack_mod])  # dense runs carry no fzpack record: the mod passes them through


@app.train()
def train(msg: Message, context: Context) -> Message:
    rc = context.run_config
    if int(rc.get("threads", 0)) > 0:
        torch.set_num_threads(int(rc["threads"]))
    method = str(rc["method"])
    partition_id, num_partitions = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    server_round = int(msg.content["config"]["server-round"])
    x, y = task.client_data(rc, partition_id, num_partitions)
    _, _, data_name = task.load(rc, "train")

    if method in task.FZPACK_METHODS:
        model, base = flower.client_model(msg, context)  # rebuilt from the base this node holds + the global values
        start = fl.values_digest(base, base.values_of(model))
    else:
        model = task.plain_model(rc)
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    metrics = task.train_local(model, x, y, rc, method, data_name, server_round, partition_id)

    if method in task.FZPACK_METHODS:
        arrays = flower.values_record(base, base.values_of(model))  # fzpack_mod codes these as the uplink payload
        _record(rc, context, server_round, partition_id, len(y), model, base, start)
    else:
        arrays = ArrayRecord(model.state_dict())
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord({**metrics, "num-examples": len(y)})})
    return Message(content, reply_to=msg)


def _record(rc, context: Context, server_round: int, partition_id: int, examples: int, model, base, start: bytes) -> None:
    """With ``record-dir`` set: this client's exact values (a lossless payload) and what it started from, per round."""
    folder = str(rc.get("record-dir", ""))
    if not folder:
        return
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    stem = f"client-r{server_round}-node{context.node_id}"
    (path / f"{stem}.fzu").write_bytes(fl.encode_update(model, base, round=server_round, examples=examples))
    info = {"round": server_round, "node": context.node_id, "partition": partition_id, "examples": examples,
            "start_digest": start.hex(), "pid": os.getpid()}
    (path / f"{stem}.json").write_text(json.dumps(info))

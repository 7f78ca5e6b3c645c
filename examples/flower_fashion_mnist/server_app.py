"""ServerApp: FzpackFedAvg (FreezeNet / DCTpS: base once, then values) or Flower's FedAvg (dense), central test accuracy."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

import task
from fzpack import fl
from fzpack.fl import flower

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    t0 = time.perf_counter()
    if int(rc.get("threads", 0)) > 0:
        torch.set_num_threads(int(rc["threads"]))
    method = str(rc["method"])
    rounds, clients = int(rc["num-server-rounds"]), int(rc["min-clients"])
    fraction = float(rc.get("fraction-train", 1.0))
    record_dir = Path(str(rc["record-dir"])) if str(rc.get("record-dir", "")) else None
    if record_dir:
        record_dir.mkdir(parents=True, exist_ok=True)
    model, arch = task.global_model(rc)
    _, _, data_name = task.load(rc, "train")
    common = dict(fraction_train=fraction, fraction_evaluate=0.0, min_available_nodes=clients,
                  min_train_nodes=max(1, round(fraction * clients)))
    base = None
    if method in task.FZPACK_METHODS:
        base = fl.Base.from_model(model, arch=arch)
        strategy = flower.FzpackFedAvg(base, downlink=str(rc["downlink"]), uplink=str(rc["uplink"]),
                                       downlink_delta=bool(rc["downlink-delta"]), uplink_delta=bool(rc["uplink-delta"]),
                                       keep_payloads=record_dir is not None, **common)
        initial = strategy.initial_arrays()
        if record_dir:
            (record_dir / "base.fzp").write_bytes(base.to_bytes())
    else:
        strategy = flower.MeteredFedAvg(**common)
        initial = ArrayRecord(model.state_dict())

    evals: dict[int, dict] = {}

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        t = time.perf_counter()
        if base is not None:
            values = flower.record_values(arrays, base)
            base.write_into(model, values)
            if record_dir:
                (record_dir / f"global-r{server_round}.fzu").write_bytes(fl.encode_update(values, base, round=server_round))
        else:
            model.load_state_dict(arrays.to_torch_state_dict())
        r = task.test_accuracy(model, rc)
        evals[server_round] = {"accuracy": r.accuracy, "loss": r.loss, "eval_seconds": time.perf_counter() - t,
                               "elapsed_seconds": time.perf_counter() - t0}
        return MetricRecord({"accuracy": r.accuracy, "loss": r.loss})

    strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds, timeout=float(rc.get("round-timeout", 600)),
                   train_config=ConfigRecord({"lr": float(rc.get("lr", 0.0))}), evaluate_fn=central_evaluate)

    if record_dir and base is not None:
        for r, by_node in strategy.uplinks.items():
            for node, payload in by_node.items():
                (record_dir / f"server-r{r}-node{node}.fzu").write_bytes(payload)
    _write_results(rc, strategy, evals, base, model, data_name, time.perf_counter() - t0)


def _write_results(rc, strategy, evals, base, model, data_name: str, seconds: float) -> None:
    rows, cum_record, cum_payload = [], 0, 0
    for rec in strategy.rounds:
        r = rec["round"]
        s = strategy.round_summary(r)
        down, up = s["downlink"], s["uplink"]
        cum_record += down["record_bytes"] + up["record_bytes"]
        cum_payload += down["payload_bytes"] + down["base_bytes"] + up["payload_bytes"]
        rows.append({
            "round": r, "clients": up["messages"],
            "downlink_record_bytes": down["record_bytes"], "downlink_payload_bytes": down["payload_bytes"],
            "downlink_base_bytes": down["base_bytes"], "uplink_record_bytes": up["record_bytes"],
            "uplink_payload_bytes": up["payload_bytes"], "cumulative_record_bytes": cum_record,
            "cumulative_payload_bytes": cum_payload, "resent": s["resent"], "failures": s["failures"],
            "downlink_messages": rec["downlink"], "uplink_messages": rec["uplink"],
            "train_seconds": s["seconds"], **{k: v for k, v in evals.get(r, {}).items()},
        })
    dense_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values()) if base is None else None
    out = {
        "engine": str(rc.get("engine", "")), "method": str(rc["method"]), "arch": str(rc.get("arch", "lenet5-caffe")),
        "dataset": data_name, "split": str(rc["split"]), "alpha": float(rc["alpha"]), "clients": int(rc["min-clients"]),
        "rounds_planned": int(rc["num-server-rounds"]), "q": float(rc["q"]), "density": float(rc["density"]),
        "downlink": str(rc["downlink"]), "uplink": str(rc["uplink"]), "downlink_delta": bool(rc["downlink-delta"]),
        "uplink_delta": bool(rc["uplink-delta"]), "local_epochs": int(rc["local-epochs"]),
        "local_steps": int(rc["local-steps"]), "seed": int(rc["seed"]),
        "base_bytes": len(base.to_bytes()) if base is not None else 0,
        "base_fingerprint": base.fingerprint_hex if base is not None else None,
        "values_per_message": base.trained_count if base is not None else sum(t.numel() for t in model.state_dict().values()),
        "dense_state_dict_bytes": dense_bytes,
        "initial": evals.get(0), "rounds": rows,
        "final_accuracy": evals[max(evals)]["accuracy"] if evals else None, "server_seconds": seconds,
    }
    path = Path(str(rc["out"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, path)

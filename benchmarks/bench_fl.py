"""Federated transfer on Flower: bytes per round and accuracy, fzpack payloads vs dense FedAvg (issue 9).

    python benchmarks/bench_fl.py run                 # every configuration (resumable: finished runs are kept)
    python benchmarks/bench_fl.py run --only iid      # one split
    python benchmarks/bench_fl.py wire                # the short loopback-deployment run, loopback bytes measured
    python benchmarks/bench_fl.py report              # tables + plot -> docs/results.md, docs/fl_bytes_accuracy.png

Every run is one `examples/flower_fashion_mnist/run.py` process on Flower's Simulation Engine:
Fashion-MNIST split over CLIENTS clients (IID, or Dirichlet non-IID with alpha 0.5, seeded),
ROUNDS rounds, every client training each round (LOCAL_STEPS local steps of batch 64, from the
global model), the global model evaluated centrally on the 10,000 test images after each round.
Configurations: dense FedAvg (Flower's float32 ArrayRecords), FreezeNet LeNet-5-Caffe at q = 0.99
with lossless values and with fp16 values in both directions, and DCTpS at density 0.01 with
lossless values. Bytes are ArrayRecord.count_bytes() of every message (what Flower moves) and the
fzpack payload lengths, per direction and cumulative; the base (sent once) is counted in round 1.

`wire` runs FreezeNet on the loopback deployment (SuperLink + SuperNodes as processes on
127.0.0.1) and reads the loopback interface's byte counters (/proc/net/dev) before and after:
every byte Flower's gRPC, its control traffic and the app bundle put on the wire, beside the
payload bytes the run recorded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, md_table, write_section

RESULTS = ROOT / "benchmarks" / "results" / "fl"
RUN = ROOT / "examples" / "flower_fashion_mnist" / "run.py"
CLIENTS, ROUNDS, LOCAL_STEPS, BATCH = 10, 20, 20, 64
CONFIGS = {  # name -> run.py options
    "dense": ["--method", "dense"],
    "freezenet-lossless": ["--method", "freezenet"],
    "freezenet-fp16": ["--method", "freezenet", "--downlink", "fp16", "--uplink", "fp16"],
    "dctps-lossless": ["--method", "dctps", "--density", "0.01"],
}
SPLITS = ("iid", "dirichlet")
# FedPM (Isik et al., ICLR 2023, "Sparse random networks for communication-efficient federated
# learning"): frozen random weights, clients train a stochastic mask and send it each round. Its
# abstract's figures, the only ones reachable here: uplink below 1 bit per parameter per client
# and round, a final model below 1 bit per parameter (seed + mask).
FEDPM = "FedPM (Isik et al., ICLR 2023): < 1 bit per parameter per client and round uplink; final model < 1 bpp"


def _run(name: str, split: str, engine: str = "simulation", extra: list[str] | None = None) -> dict:
    out = RESULTS / split / f"{name}.json" if engine == "simulation" else RESULTS / f"wire-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(RUN), "--engine", engine, "--clients", str(CLIENTS if engine == "simulation" else 2),
           "--rounds", str(ROUNDS if engine == "simulation" else 3), "--split", split, "--local-steps", str(LOCAL_STEPS),
           "--batch-size", str(BATCH), "--seed", "1", "--out", str(out), "--quiet", *CONFIGS[name], *(extra or [])]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    res = json.loads(out.read_text())
    res["bench_command"] = " ".join(cmd[1:]).replace(str(ROOT) + "/", "")
    res["bench_seconds"] = time.perf_counter() - t
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res


def cmd_run(args: argparse.Namespace) -> None:
    for split in SPLITS:
        if args.only and split not in args.only:
            continue
        for name in CONFIGS:
            if (RESULTS / split / f"{name}.json").exists():
                continue
            res = _run(name, split)
            print(f"{split} {name}: accuracy {res['final_accuracy']:.4f}, cumulative "
                  f"{res['rounds'][-1]['cumulative_record_bytes']:,} B, {res['bench_seconds']:.0f} s", flush=True)


def _loopback_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[0])  # received bytes on lo == bytes sent on lo
    raise RuntimeError("no loopback interface in /proc/net/dev")


def cmd_wire(args: argparse.Namespace) -> None:
    before = _loopback_bytes()
    res = _run("freezenet-lossless", "iid", engine="deployment", extra=["--train-size", "4000", "--test-size", "2000"])
    res["loopback_bytes"] = _loopback_bytes() - before
    (RESULTS / "wire-freezenet-lossless.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"loopback {res['loopback_bytes']:,} B, payloads {res['rounds'][-1]['cumulative_payload_bytes']:,} B")


def _load(split: str) -> dict[str, dict]:
    return {name: json.loads((RESULTS / split / f"{name}.json").read_text())
            for name in CONFIGS if (RESULTS / split / f"{name}.json").exists()}


def cmd_report(args: argparse.Namespace) -> None:
    parts = ["## Federated transfer on Flower: fzpack payloads vs dense FedAvg (issue 9)\n",
             f"Simulation Engine, {CLIENTS} clients x {ROUNDS} rounds, every client every round, {LOCAL_STEPS} local SGD "
             f"steps of batch {BATCH} per round (FreezeNet lr 0.1, dense lr 0.01, DCTpS Adam 1e-3), LeNet-5-Caffe on "
             "Fashion-MNIST, central test accuracy of the global model after each round. Bytes per client and round are "
             "means over the clients (round 1's downlink includes the base, sent once). 'bpp' is bits per parameter of the "
             f"network (431,080) per client and round, uplink. {FEDPM}: the comparison per parameter is in the bpp column; "
             "FedPM's per-dataset tables (MNIST/CIFAR, conv nets) could not be retrieved here, so no accuracy is put beside "
             "ours.\n"]
    for split in SPLITS:
        runs = _load(split)
        if not runs:
            continue
        dense = runs.get("dense")
        rows = []
        for name, r in runs.items():
            last, first = r["rounds"][-1], r["rounds"][0]
            n = r["clients"]
            up = sum(x["uplink_record_bytes"] for x in r["rounds"][1:]) / max(1, (len(r["rounds"]) - 1) * n)
            down = sum(x["downlink_record_bytes"] for x in r["rounds"][1:]) / max(1, (len(r["rounds"]) - 1) * n)
            ratio = dense["rounds"][-1]["cumulative_record_bytes"] / last["cumulative_record_bytes"] if dense else None
            gap = 100 * (r["final_accuracy"] - dense["final_accuracy"]) if dense else None
            rows.append([name, f"{first['downlink_record_bytes'] / n:,.0f}", f"{down:,.0f}", f"{up:,.0f}",
                         f"{8 * up / 431_080:.3f}", f"{last['cumulative_record_bytes']:,}",
                         f"{ratio:,.1f}x" if ratio else "-", f"{r['final_accuracy']:.4f}",
                         f"{gap:+.2f} pt" if gap is not None else "-", f"{r['bench_seconds'] / 60:.0f} min"])
        parts += [f"\n### {'IID' if split == 'iid' else 'Dirichlet non-IID (alpha 0.5)'}\n",
                  md_table(["configuration", "downlink round 1 B/client", "downlink B/client/round", "uplink B/client/round",
                            "uplink bpp", f"cumulative B ({ROUNDS} rounds, all clients)", "bytes vs dense",
                            f"test acc after {ROUNDS}", "vs dense", "wall"], rows)]
        parts.append("\nCommand per run: `" + next(iter(runs.values()))["bench_command"].split(" --method")[0] + " ...`.")
    wire = RESULTS / "wire-freezenet-lossless.json"
    if wire.exists():
        w = json.loads(wire.read_text())
        parts += ["\n### Loopback deployment, measured on the wire\n",
                  f"FreezeNet q = 0.99 lossless, {w['clients']} SuperNodes x {len(w['rounds'])} rounds on 127.0.0.1 "
                  f"(a 4,000-image training subset): the recorded payloads total {w['rounds'][-1]['cumulative_payload_bytes']:,} B "
                  f"(ArrayRecords {w['rounds'][-1]['cumulative_record_bytes']:,} B); the loopback interface carried "
                  f"{w['loopback_bytes']:,} B in all (gRPC framing, Flower's control messages and heartbeats, the app bundle "
                  f"each SuperNode fetches, and anything else on lo during the run). Test accuracy {w['final_accuracy']:.4f}."]
    if any(_load(s) for s in SPLITS):
        _plot(ROOT / "docs" / "fl_bytes_accuracy.png")
        parts.append("\n![accuracy vs cumulative bytes per client](fl_bytes_accuracy.png)")
    text = "\n".join(parts)
    print(text)
    if not args.no_write:
        write_section("federated", text)


def _plot(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SPLITS), figsize=(6.5 * len(SPLITS), 4.5), squeeze=False)
    for ax, split in zip(axes[0], SPLITS):
        for name, r in _load(split).items():
            xs = [x["cumulative_record_bytes"] / r["clients"] for x in r["rounds"]]
            ax.plot(xs, [x["accuracy"] for x in r["rounds"]], marker="o", ms=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("cumulative bytes per client (both directions, log)")
        ax.set_ylabel("test accuracy (Fashion-MNIST)")
        ax.set_title(f"{split}: {CLIENTS} clients x {ROUNDS} rounds")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--only", nargs="*", choices=SPLITS)
    sub.add_parser("wire")
    rep = sub.add_parser("report")
    rep.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    {"run": cmd_run, "wire": cmd_wire, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()

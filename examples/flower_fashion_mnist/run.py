#!/usr/bin/env python3
"""Run the example on one engine with one command, and leave no process behind.

    python examples/flower_fashion_mnist/run.py --engine simulation --clients 2 --rounds 2 --method freezenet --out results.json
    python examples/flower_fashion_mnist/run.py --engine deployment --clients 2 --rounds 2 --method freezenet --out results.json

``simulation``: a SuperLink with ``--simulation`` runs the app on Flower's Simulation Engine
(Ray; needs ``flwr[simulation]``; Ray's internal services listen on every interface, which
Flower 1.41 does not let us change). ``deployment``: a SuperLink and ``--clients`` SuperNodes as
separate processes on 127.0.0.1 (insecure, loopback only). Either way the app is started with
``flwr run`` and the results (per round: uplink / downlink bytes, cumulative bytes, central test
accuracy, wall time) land in ``--out``.

Flower's state (FLWR_HOME), Ray's (RAY_TMPDIR) and the logs live in fresh temporary directories,
removed afterwards (kept, and named, when the run fails); telemetry and update checks are off,
runtime dependency installation is off (fzpack[fl] must be installed). Every process started -
including those Flower and Ray start in new sessions - carries the environment variable
FZPACK_FLOWER_RUN (set it yourself to choose the value); on exit, normal or not, they are all
stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
MARKER = "FZPACK_FLOWER_RUN"
CONNECTION = "fzpack-local"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("simulation", "deployment"), required=True)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--method", choices=("freezenet", "dctps", "dense"), default="freezenet")
    p.add_argument("--split", choices=("iid", "dirichlet"), default="iid")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (default 0.5)")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (falls back to synthetic if absent) or synthetic")
    p.add_argument("--data-dir", default="")
    p.add_argument("--train-size", type=int, default=0, help="0: the whole training split; N: a seeded subset")
    p.add_argument("--test-size", type=int, default=0)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--local-steps", type=int, default=0, help="> 0: at most this many local steps per round")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.0, help="0: per method (SGD 0.1 FreezeNet, 0.01 dense, Adam 1e-3 DCTpS)")
    p.add_argument("--q", type=float, default=0.99, help="FreezeNet freezing rate")
    p.add_argument("--density", type=float, default=0.01, help="DCTpS density")
    p.add_argument("--fraction-train", type=float, default=1.0)
    p.add_argument("--downlink", choices=("lossless", "fp16", "bf16", "q8"), default="lossless")
    p.add_argument("--uplink", choices=("lossless", "fp16", "bf16", "q8"), default="lossless")
    p.add_argument("--downlink-delta", action="store_true")
    p.add_argument("--uplink-delta", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per server / client process (0: torch's default)")
    p.add_argument("--client-cpus", type=float, default=1, help="simulation: CPUs Ray reserves per client")
    p.add_argument("--record-dir", default="", help="clients and server write their payloads here")
    p.add_argument("--out", required=True, help="results JSON")
    p.add_argument("--timeout", type=float, default=1800, help="seconds for the whole run, start-up included")
    p.add_argument("--keep", action="store_true", help="keep the temporary Flower / Ray / log directory")
    p.add_argument("--quiet", action="store_true", help="do not print the per-round table")
    return p.parse_args(argv)


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a TOML basic string


def marked_pids(marker: str, roots: tuple[str, ...] = ()) -> list[int]:
    """Processes (not this one) started for this run (Linux /proc).

    A process is ours when its environment carries FZPACK_FLOWER_RUN=marker, or - for the Ray
    processes that overwrite their environment with a process title - when its working
    directory or an open file lies under one of ``roots`` (the run's temporary directories).
    """
    needle = f"{MARKER}={marker}".encode()
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        pid = int(d.name)
        if pid == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                out.append(pid)
                continue
            if roots and (d / "status").read_text().find("State:\tZ") < 0:
                links = [os.readlink(d / "cwd")]
                for fd in (d / "fd").iterdir():
                    try:
                        links.append(os.readlink(fd))
                    except OSError:
                        pass
                links = [link.removesuffix(" (deleted)") for link in links]
                if any(link == root or link.startswith(root + "/") for link in links for root in roots):
                    out.append(pid)
        except OSError:
            continue
    return out


def become_subreaper() -> bool:
    """Linux: orphans of the processes we start (Flower and Ray detach some) become our children, not init's.

    So every process of the run stays in our tree, where ``stop_all`` finds, stops and reaps it.
    """
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def descendants() -> list[int]:
    """Live (not zombie) processes below this one."""
    parent: dict[int, int] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            parent[int(d.name)] = int(fields[1])
    out, frontier = [], [os.getpid()]
    while frontier:
        kids = [pid for pid, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def app_processes() -> list[int]:
    """Our descendants that run a ServerApp, a ClientApp or a simulation (they end by themselves after a run)."""
    out = []
    for pid in descendants():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if any(name in cmd for name in (b"flwr-simulation", b"flwr-serverapp", b"flwr-clientapp")):
            out.append(pid)
    return out


def stop_all(procs: list[subprocess.Popen], marker: str, roots: tuple[str, ...] = (), grace: float = 5.0) -> list[int]:
    """SIGTERM what we started, then every other process of the run; SIGKILL what is left. Returns survivors."""
    end = time.monotonic() + 3 * grace  # a finished run's app processes shut down (and stop Ray) by themselves
    while app_processes() and time.monotonic() < end:
        time.sleep(0.2)
        reap()
    for p in reversed(procs):  # flwr run and the supernodes first, the SuperLink (which stops its SuperExec) last
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    end = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass

    def ours() -> list[int]:
        return sorted(set(descendants()) | set(marked_pids(marker, roots)))

    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = ours()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace
        while pids and time.monotonic() < end:
            time.sleep(0.1)
            reap()
            pids = ours()
        if not pids:
            break
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    end = time.monotonic() + 1
    while time.monotonic() < end:
        reap()
        time.sleep(0.05)
    return ours()


def wait_healthy(port: int, proc: subprocess.Popen, deadline: float) -> None:
    url = f"http://127.0.0.1:{port}/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the SuperLink exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the SuperLink did not come up")


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_config(args: argparse.Namespace, out: Path) -> dict[str, object]:
    return {
        "num-server-rounds": args.rounds, "min-clients": args.clients, "fraction-train": args.fraction_train,
        "method": args.method, "q": args.q, "density": args.density, "dataset": args.dataset, "data-dir": args.data_dir,
        "train-size": args.train_size, "test-size": args.test_size, "split": args.split, "alpha": args.alpha,
        "seed": args.seed, "local-epochs": args.local_epochs, "local-steps": args.local_steps, "batch-size": args.batch_size,
        "lr": args.lr, "downlink": args.downlink, "uplink": args.uplink, "downlink-delta": args.downlink_delta,
        "uplink-delta": args.uplink_delta, "threads": args.threads, "engine": args.engine, "out": str(out),
        "record-dir": str(Path(args.record_dir).resolve()) if args.record_dir else "",
    }


def print_table(results: dict) -> None:
    print(f"{results['engine']}: {results['method']} on {results['dataset']} ({results['split']}), "
          f"{results['clients']} clients; base {results['base_bytes']:,} B; downlink {results['downlink']}, uplink {results['uplink']}")
    init = results.get("initial") or {}
    print(f"round 0: test accuracy {init.get('accuracy', float('nan')):.4f}")
    print(f"{'round':>5} {'clients':>7} {'downlink B':>11} {'(base B)':>9} {'uplink B':>10} {'cumulative B':>13} {'accuracy':>9} {'wall s':>7}")
    for r in results["rounds"]:
        print(f"{r['round']:>5} {r['clients']:>7} {r['downlink_record_bytes']:>11,} {r['downlink_base_bytes']:>9,} "
              f"{r['uplink_record_bytes']:>10,} {r['cumulative_record_bytes']:>13,} {r.get('accuracy', float('nan')):>9.4f} "
              f"{r.get('elapsed_seconds', float('nan')):>7.1f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    become_subreaper()
    out = Path(args.out).resolve()
    marker = os.environ.get(MARKER) or uuid.uuid4().hex
    work = Path(tempfile.mkdtemp(prefix="fzpack-flower-"))
    ray_tmp = tempfile.mkdtemp(prefix="fzr", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env.update({MARKER: marker, "FLWR_HOME": str(work / "flwr"), "RAY_TMPDIR": ray_tmp, "FLWR_TELEMETRY_ENABLED": "0",
                "FLWR_DISABLE_UPDATE_CHECK": "1", "PATH": bindir + os.pathsep + env.get("PATH", "")})
    if env.get("PYTHONPATH"):  # Flower and Ray start processes elsewhere: relative entries must not move
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    ports = free_ports(1 + args.clients)
    (work / "flwr").mkdir()
    (work / "flwr" / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\naddress = "127.0.0.1:{ports[0]}"\ninsecure = true\n')
    if out.exists():
        out.unlink()
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    ok = False
    t0 = time.monotonic()
    deadline = t0 + args.timeout

    def start(name: str, cmd: list[str]) -> subprocess.Popen:
        log = work / f"{name}.log"
        logs.append(log)
        with open(log, "wb") as fh:
            p = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=work, start_new_session=True)
        procs.append(p)
        return p

    try:
        link = ["flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(ports[0]),
                "--disable-runtime-dependency-installation"]
        superlink = start("superlink", link + (["--simulation"] if args.engine == "simulation" else []))
        wait_healthy(ports[0], superlink, deadline)
        if args.engine == "deployment":
            for i in range(args.clients):
                start(f"supernode-{i}", ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{ports[0]}",
                                         "--host", "127.0.0.1", "--port", str(ports[1 + i]),
                                         "--node-config", f"partition-id={i} num-partitions={args.clients}"])
        rc = run_config(args, out)
        cmd = ["flwr", "run", str(APP_DIR), CONNECTION, "--stream",
               "--run-config", " ".join(f"{k}={toml_value(v)}" for k, v in rc.items())]
        if args.engine == "simulation":
            cmd += ["--federation-config", f"num-supernodes={args.clients} client-resources-num-cpus={args.client_cpus}"]
        runner = start("flwr-run", cmd)
        # `flwr run --stream` returns when the run has finished; the results appear just before.
        # Waiting for both lets Flower stop its ServerApp (and Ray) cleanly before anything is killed.
        settle = None
        while runner.poll() is None or not out.exists():
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"the run did not finish within --timeout {args.timeout:g} s")
            if out.exists() or runner.poll() is not None:
                settle = settle or now
                if now - settle > 30:
                    break
            time.sleep(0.2)
        if not out.exists():
            raise RuntimeError(f"flwr run exited with {runner.returncode} and no results were written")
        ok = True
    except (RuntimeError, TimeoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        for log in logs:
            print(f"--- {log.name} (last lines) ---\n{tail(log)}", file=sys.stderr)
    finally:
        survivors = stop_all(procs, marker, (str(work), ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
        if survivors:
            print(f"warning: processes {survivors} carrying {MARKER}={marker} did not stop", file=sys.stderr)
            ok = False
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"Flower home, Ray and logs kept in {work}", file=sys.stderr)
    if not ok:
        return 1
    results = json.loads(out.read_text())
    results["run_seconds"] = time.monotonic() - t0
    out.write_text(json.dumps(results, indent=1))
    if not args.quiet:
        print_table(results)
        print(f"total {results['run_seconds']:.1f} s (start-up and shut-down included); results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The access log in a store outage: server CPU and log bytes per failed call with every
failure logged (``--access-log-failures-per-s 0``) beside the default limit, in the same
run, interleaved round by round (machines are noisy: read the medians and their ratio).

Two ``ferry serve`` processes over a Redis URL whose port nothing listens on, so every call
fails UNAVAILABLE at once, as in an outage where the store refuses connections. Each round
drives each server with loadtest/loadgen.py's closed loop at batch 1, alternating which
goes first. Bounded in time and count.

    python loadtest/outage_log_bench.py --rounds 3 --seconds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import loadgen
import serve_bench
import workload as workloads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services import free_port

LIMITS = {"every": "0", "limited": "100"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    loadgen.add_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = loadgen.settings_of(args)
    work = Path(tempfile.mkdtemp(prefix="ferry-outage-log-"))
    try:
        report = _run(args, settings, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    print("\n| failure lines | server CPU µs per failed call | log bytes per failed call |")
    print("|---|---:|---:|")
    for name in LIMITS:
        case = report[name]
        print(f"| {name} | {case['cpu_us_per_call']} | {case['log_bytes_per_call']} |")
    print(f"\nCPU limited/every: {report['cpu_ratio']:.3f}")


def _run(args: argparse.Namespace, settings: loadgen.Settings, work: Path) -> dict[str, Any]:
    data = work / "data"
    fraud = [sys.executable, str(serve_bench.ROOT / "datasets" / "fraud.py"), str(data)]
    subprocess.run(
        [*fraud, "--users", "200", "--merchants", "10", "--transactions", "200"],
        check=True,
        capture_output=True,
    )
    repo = workloads.load(str(serve_bench.REPO), str(data))
    payloads = workloads.payloads(repo, workloads.Workload(batch=1, seed=1))
    refused = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: every call fails
    base = [sys.executable, "-m", "ferry.cli.main", "serve", str(serve_bench.REPO)]
    base += ["--online-store", refused, "--port", "0", "--log-format", "json"]
    logs = {name: work / f"{name}.log" for name in LIMITS}
    servers = {
        name: serve_bench.start([*base, "--access-log-failures-per-s", limit], logs[name], 1)
        for name, limit in LIMITS.items()
    }
    method = workloads.Workload(batch=1).method
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in LIMITS}
    try:
        pids = {
            name: loadgen.listening_pids(int(t.rsplit(":", 1)[1]))
            for name, (_, t) in servers.items()
        }
        for round_ in range(args.rounds):
            order = list(LIMITS) if round_ % 2 == 0 else list(reversed(LIMITS))
            for name in order:
                before = logs[name].stat().st_size
                run = loadgen.run(servers[name][1], method, payloads, settings, None, pids[name])
                failed = sum(run["errors"].values())
                if run["calls"] or not failed:
                    raise SystemExit(f"expected only failed calls, got {run}")
                runs[name].append(
                    {
                        "cpu_us_per_call": run["server_cpu_s"] / failed * 1e6,
                        "log_bytes_per_call": (logs[name].stat().st_size - before) / failed,
                        "failed_per_s": run["errors"].get("UNAVAILABLE", 0) / settings.seconds,
                    }
                )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=60)
    report: dict[str, Any] = {
        "machine": serve_bench.machine(),
        "command": " ".join(["python", "loadtest/outage_log_bench.py", *sys.argv[1:]]),
    }
    for name in LIMITS:
        report[name] = {
            key: round(statistics.median(r[key] for r in runs[name]), 1) for key in runs[name][0]
        }
    report["cpu_ratio"] = report["limited"]["cpu_us_per_call"] / report["every"]["cpu_us_per_call"]
    return report


if __name__ == "__main__":
    main()

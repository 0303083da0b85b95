"""Metrics overhead: Ferry's server CPU per call with Prometheus metrics on and off, in the
same run, over the same Redis and data, interleaved round by round (machines are noisy:
read the medians and their ratio).

Two `ferry serve` processes over one redis-server: one with `--metrics-port 0`, one
without. Each round drives each server with loadtest/loadgen.py's closed loop at batch 1
and batch 100 of fraud_v1, alternating which goes first. Bounded in time and count.

    python loadtest/metrics_overhead.py --rounds 5 --seconds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import loadgen
import serve_bench
import workload as workloads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services import running_redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    loadgen.add_arguments(parser)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", default="1,100")
    args = parser.parse_args()
    settings = loadgen.settings_of(args)
    work = Path(tempfile.mkdtemp(prefix="ferry-metrics-overhead-"))
    try:
        with running_redis(work) as redis:
            report = _run(args, settings, work, redis.url)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    print("\n| batch | CPU µs/call, metrics off | metrics on | ratio | p50 ms off | p50 ms on |")
    print("|---|---|---|---|---|---|")
    for case in report["cases"]:
        print(
            f"| {case['batch']} | {case['off_cpu_us']} | {case['on_cpu_us']} | "
            f"{case['ratio']:.3f} | {case['off_p50_ms']} | {case['on_p50_ms']} |"
        )


def _run(
    args: argparse.Namespace, settings: loadgen.Settings, work: Path, url: str
) -> dict[str, Any]:
    serve_bench.load_data(work, url, args.users)
    repo = workloads.load(str(serve_bench.REPO), str(work / "data"))
    base = [sys.executable, "-m", "ferry.cli.main", "serve", str(serve_bench.REPO)]
    base += ["--online-store", url, "--port", "0"]
    servers = {
        "off": serve_bench.start(base, work / "off.log", 1),
        "on": serve_bench.start([*base, "--metrics-port", "0"], work / "on.log", 1),
    }
    try:
        pids = {
            name: loadgen.listening_pids(int(t.rsplit(":", 1)[1]))
            for name, (_, t) in servers.items()
        }
        cases = []
        for batch in (int(b) for b in args.batches.split(",")):
            workload = workloads.Workload(batch=batch, seed=batch)
            payloads = workloads.payloads(repo, workload)
            runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
            for round_ in range(args.rounds):
                order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
                for name in order:
                    target = servers[name][1]
                    runs[name].append(
                        loadgen.run(target, workload.method, payloads, settings, None, pids[name])
                    )
            cases.append(_case(batch, runs))
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=60)
    return {
        "machine": serve_bench.machine(),
        "command": " ".join(["python", "loadtest/metrics_overhead.py", *sys.argv[1:]]),
        "cases": cases,
    }


def _case(batch: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def median(name: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[name] if r[key] is not None), 3)

    off, on = median("off", "server_cpu_us_per_call"), median("on", "server_cpu_us_per_call")
    errors = sum(sum(r["errors"].values()) for rs in runs.values() for r in rs)
    if errors:
        raise SystemExit(f"{errors} calls failed")
    return {
        "batch": batch,
        "rounds": len(runs["off"]),
        "off_cpu_us": off,
        "on_cpu_us": on,
        "ratio": on / off if off else float("nan"),
        "off_p50_ms": median("off", "p50_ms"),
        "on_p50_ms": median("on", "p50_ms"),
        "off_rps": median("off", "rps"),
        "on_rps": median("on", "rps"),
    }


if __name__ == "__main__":
    main()

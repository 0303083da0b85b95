"""Tail latency under load: batch 1, open loop, Ferry and the echo at the same offered rate.

Sets up on loopback a redis-server and the fraud data set materialized into it, `ferry
serve` of the work tree (and, with ``--base REV``, of that revision from a git worktree,
over the same store) and the bare grpc.aio echo. Finds the work tree's closed-loop maximum,
then drives every server at ``--fraction`` of it, the same calls/s for all, in
``--rounds`` interleaved rounds; prints medians of p50/p99/p99.9 and the ratios. Each Ferry
server runs with loadtest/gc_probe on its path, which records its garbage collections:
their count and longest pause while it served are printed too. Bounded in time and count.
A benchmark, not a test.

    python loadtest/tail_bench.py --base main~1 --fraction 0.5 --rounds 5 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import loadgen
import serve_bench
import workload as workloads
from revisions import ROOT, environment_of, worktree

sys.path.insert(0, str(ROOT))
from tests.services import running_redis

PROBE = Path(__file__).resolve().parent / "gc_probe"


def serve(tree: Path, url: str, work: Path, name: str, flags: list[str]) -> dict[str, Any]:
    """`ferry serve` of ``tree``'s code with the GC probe; its process, target and pids."""
    env = environment_of(tree)
    env["PYTHONPATH"] = os.pathsep.join([str(PROBE), env["PYTHONPATH"]])
    env["FERRY_GC_PROBE_OUT"] = str(work / f"gc-{name}")
    command = [sys.executable, "-m", "ferry.cli.main", "serve", str(serve_bench.REPO)]
    command += ["--online-store", url, "--port", "0", *flags]
    process, target = serve_bench.start(command, work / f"{name}.log", 1, env)
    return {"process": process, "target": target, "pids": [process.pid], "name": name}


def collections(work: Path, name: str, pid: int, since: float) -> list[dict[str, float]]:
    """The collections of generations 1 and 2 a server made once the load began."""
    path = work / f"gc-{name}.{pid}"
    found = json.loads(path.read_text()) if path.exists() else []
    return [c for c in found if c["at"] >= since]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    loadgen.add_arguments(parser)
    parser.add_argument("--base", help="also serve this revision (e.g. main~1)")
    parser.add_argument("--fraction", type=float, default=0.5, help="of the maximum rate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--serve-flag", action="append", default=[], help="for each ferry serve")
    args = parser.parse_args()
    settings = loadgen.settings_of(args)
    work = Path(tempfile.mkdtemp(prefix="ferry-tail-bench-"))
    report: dict[str, Any] = {
        "machine": serve_bench.machine(),
        "command": " ".join(["python", "loadtest/tail_bench.py", *sys.argv[1:]]),
    }
    servers: list[dict[str, Any]] = []
    try:
        with ExitStack() as stack, running_redis(work) as redis:
            serve_bench.load_data(work, redis.url, args.users)
            repo = workloads.load(str(serve_bench.REPO), str(work / "data"))
            if args.base:
                base = stack.enter_context(worktree(args.base, work / "base-tree"))
                servers.append(serve(base, redis.url, work, "base", args.serve_flag))
            servers.append(serve(ROOT, redis.url, work, "head", args.serve_flag))
            echo_target, _ = stack.enter_context(loadgen.echo_server(1))
            workload = workloads.Workload(batch=1)
            payloads = workloads.payloads(repo, workload)
            head = servers[-1]
            report["load_began"] = time.monotonic()  # system-wide: the probe's clock too
            peak = loadgen.run(head["target"], workload.method, payloads, settings, None)
            rate = max(1.0, args.fraction * peak["rps"])
            report |= {"head_max_rps": peak["rps"], "offered_rps": round(rate, 1)}
            runs: dict[str, list[dict[str, Any]]] = {s["name"]: [] for s in servers}
            runs["echo"] = []
            targets = [(s["name"], s["target"]) for s in servers] + [("echo", echo_target)]
            for _ in range(args.rounds):
                for name, target in targets:
                    runs[name].append(
                        loadgen.run(target, workload.method, payloads, settings, rate)
                    )
            report["runs"] = runs
    finally:
        for server in servers:
            server["process"].terminate()
            server["process"].wait(timeout=60)
        since = report.get("load_began", 0.0)
        report["gc"] = {
            s["name"]: collections(work, s["name"], s["process"].pid, since) for s in servers
        }
        shutil.rmtree(work, ignore_errors=True)
    _summarize(report)
    print(json.dumps(report, indent=2))
    _print_table(report)


def _summarize(report: dict[str, Any]) -> None:
    fields = ("p50_ms", "p99_ms", "p999_ms", "max_ms")
    report["median"] = {
        name: {f: round(statistics.median(r[f] for r in runs), 3) for f in fields}
        for name, runs in report.get("runs", {}).items()
    }
    echo = report["median"].get("echo")
    if echo:
        report["to_echo"] = {
            name: {f: round(m[f] / echo[f], 2) for f in fields}
            for name, m in report["median"].items()
            if name != "echo"
        }


def _print_table(report: dict[str, Any]) -> None:
    print(
        f"\nbatch 1, open loop at {report.get('offered_rps')} calls/s for every server "
        f"(the work tree's max {report.get('head_max_rps')}); medians of rounds"
    )
    print(
        "| server | p50 ms | p99 ms | p99.9 ms | max ms | p99 vs echo | gen-2 GCs | longest GC ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, m in report.get("median", {}).items():
        pauses = report["gc"].get(name, [])
        full = [c for c in pauses if c["generation"] == 2]
        longest = max((c["ms"] for c in pauses), default="")
        ratio = report.get("to_echo", {}).get(name, {}).get("p99_ms", "")
        gcs = len(full) if name != "echo" else ""
        print(
            f"| {name} | {m['p50_ms']} | {m['p99_ms']} | {m['p999_ms']} | {m['max_ms']} | "
            f"{ratio} | {gcs} | {longest} |"
        )


if __name__ == "__main__":
    main()

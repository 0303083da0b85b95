"""Stored row size benchmark: Redis memory per row, and batch-100 serving, of two revisions.

Writes the fraud data set (``--users`` users, the last three days) once, then for the work
tree and ``--base REV`` (a git worktree): a fresh redis-server each, the data materialized
into it by that revision's ``ferry materialize-incremental``, Redis ``used_memory`` before
and after over the rows stored, and per view the mean key and value length and ``MEMORY
USAGE`` of a sample of keys. Then a `ferry serve` of each revision over its own Redis, and
closed-loop batch-100 runs alternating between the two ``--repeats`` times: calls/s, server
CPU per call and the Redis server's CPU per call (from /proc around each run). Loopback
only, bounded in time and count; stops what it started. A benchmark, not a test.

    python loadtest/row_size_bench.py --base 13ae18e --users 100000 --seconds 5 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import loadgen
import serve_bench
import workload as workloads
from materialize_bench import used_memory
from revisions import ROOT, environment_of, worktree

sys.path.insert(0, str(ROOT))
from ferry.stores import RespConnection, hashed_prefix
from tests.services import RedisServer, running_redis

REPO = serve_bench.REPO
VIEWS = ("user_stats", "merchant_stats", "user_merchant_stats")


def materialize(tree: Path, data: Path, redis: RedisServer) -> dict[str, Any]:
    before = used_memory(redis)
    command = [sys.executable, "-m", "ferry.cli.main", "materialize-incremental", str(REPO)]
    command += ["--offline-root", str(data), "--online-store", redis.url, "--end", "now"]
    subprocess.run(command, check=True, capture_output=True, env=environment_of(tree))
    keys = int(redis.cli("dbsize"))
    return {"keys": keys, "used_memory_delta": used_memory(redis) - before}


async def per_view(url: str, sample: int) -> dict[str, dict[str, float]]:
    """Per view: keys sampled, mean key and value bytes and MEMORY USAGE (both layouts'
    prefixes are recognised; other keys, such as watermarks and schemas, are left out)."""
    prefixes = {}
    for view in VIEWS:
        prefixes[f"fraud:{view}:".encode()] = view
        prefixes[hashed_prefix("fraud", view)] = view
    connection = RespConnection(url, 30, 5)
    sums: dict[str, list[float]] = {view: [0, 0, 0, 0] for view in VIEWS}
    try:
        cursor: Any = b"0"
        while True:
            cursor, keys = await connection.execute(b"SCAN", cursor, b"COUNT", 1000)
            for key in keys:
                view = next((v for p, v in prefixes.items() if key.startswith(p)), None)
                if view is None or sums[view][0] >= sample:
                    continue
                value = await connection.execute(b"GET", key)
                usage = await connection.execute(b"MEMORY", b"USAGE", key, b"SAMPLES", b"0")
                totals = sums[view]
                totals[0] += 1
                totals[1] += len(key)
                totals[2] += len(value)
                totals[3] += usage
            if int(cursor) == 0:
                break
    finally:
        await connection.close()
    return {
        view: {
            "sampled": n,
            "key_bytes": round(k / n, 1),
            "value_bytes": round(v / n, 1),
            "memory_usage": round(u / n, 1),
        }
        for view, (n, k, v, u) in sums.items()
        if n
    }


def serve(tree: Path, url: str, work: Path, name: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "ferry.cli.main", "serve", str(REPO), "--online-store", url]
    command += ["--port", "0"]
    process, target = serve_bench.start(command, work / f"{name}.log", 1, environment_of(tree))
    return {"process": process, "target": target, "pids": [process.pid]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    loadgen.add_arguments(parser)
    parser.add_argument("--base", required=True, help="the revision to compare with")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=3_000, help="keys per view sampled")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = loadgen.settings_of(args)
    work = Path(tempfile.mkdtemp(prefix="ferry-row-size-"))
    report: dict[str, Any] = {
        "machine": serve_bench.machine(),
        "command": " ".join(["python", "loadtest/row_size_bench.py", *sys.argv[1:]]),
        "batch": args.batch,
    }
    try:
        with ExitStack() as stack:
            data = work / "data"
            start_day = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
            sizes = ["--users", str(args.users), "--merchants", str(max(10, args.users // 20))]
            sizes += ["--transactions", str(args.users * 2), "--start", start_day]
            subprocess.run(
                [sys.executable, str(ROOT / "datasets" / "fraud.py"), str(data), *sizes],
                check=True,
                capture_output=True,
            )
            trees = {"base": stack.enter_context(worktree(args.base, work / "base")), "head": ROOT}
            servers = {}
            for name, tree in trees.items():
                (work / f"redis-{name}").mkdir()
                redis = stack.enter_context(running_redis(work / f"redis-{name}"))
                stored = materialize(tree, data, redis)
                stored["bytes_per_key"] = round(stored["used_memory_delta"] / stored["keys"], 1)
                stored["views"] = asyncio.run(per_view(redis.url, args.sample))
                report[name] = {"stored": stored, "runs": []}
                servers[name] = {
                    **serve(tree, redis.url, work, name),
                    "redis_pid": redis.process.pid,
                }
            try:
                repo = workloads.load(str(REPO), str(data))
                workload = workloads.Workload(batch=args.batch, distinct=20_000, seed=1)
                payloads = workloads.payloads(repo, workload)
                for _ in range(args.repeats):
                    for name, server in servers.items():
                        redis_before = loadgen.cpu_seconds([server["redis_pid"]])
                        run = loadgen.run(
                            server["target"],
                            workload.method,
                            payloads,
                            settings,
                            None,
                            server["pids"],
                        )
                        redis_s = loadgen.cpu_seconds([server["redis_pid"]]) - redis_before
                        run["redis_cpu_us_per_call"] = round(
                            redis_s / max(run["calls"], 1) * 1e6, 1
                        )
                        report[name]["runs"].append(run)
            finally:
                for server in servers.values():
                    server["process"].terminate()
                    server["process"].wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _summarize(report)
    print(json.dumps(report, indent=2, default=str))
    _print_table(report)
    errors = sum(sum(run["errors"].values()) for n in ("base", "head") for run in report[n]["runs"])
    if errors:
        raise SystemExit(f"{errors} calls failed")


def _summarize(report: dict[str, Any]) -> None:
    for name in ("base", "head"):
        runs = report[name]["runs"]
        report[name]["median"] = {
            field: round(statistics.median(r[field] for r in runs), 1)
            for field in ("rps", "server_cpu_us_per_call", "redis_cpu_us_per_call", "p50_ms")
        }


def _print_table(report: dict[str, Any]) -> None:
    base, head = report["base"], report["head"]
    print(f"\n{report['command']}\n")
    print("| | base | head | head/base |")
    print("|---|---:|---:|---:|")

    def line(label: str, a: float, b: float) -> None:
        print(f"| {label} | {a:,} | {b:,} | {b / a:.2f} |")

    line(
        "Redis used_memory per stored key",
        base["stored"]["bytes_per_key"],
        head["stored"]["bytes_per_key"],
    )
    for view in VIEWS:
        for field in ("key_bytes", "value_bytes", "memory_usage"):
            a = base["stored"]["views"].get(view, {}).get(field)
            b = head["stored"]["views"].get(view, {}).get(field)
            if a and b:
                line(f"{view} {field}", a, b)
    for field in ("rps", "server_cpu_us_per_call", "redis_cpu_us_per_call", "p50_ms"):
        line(f"batch {report['batch']} {field}", base["median"][field], head["median"][field])


if __name__ == "__main__":
    main()

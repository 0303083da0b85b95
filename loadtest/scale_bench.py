"""Scale-out, in one run: materialization into a Redis Cluster by 1, 2 and 4 shards on a Ray
cluster, beside one plain job into the same cluster and into a standalone Redis; then
serving at batch 1/10/100 from standalone Redis and from the cluster (serve_bench.py, each
beside its own echo baseline).

Starts everything itself on loopback: the fraud data set (datasets/fraud.py) at ``--users``
in row groups of ``--row-group`` rows, a Redis Cluster of 3 primaries (no replicas: on a
small machine their replication would take CPU from the job), a standalone redis-server,
and a one-node Ray cluster (``ray start --head``, ``--ray-cpus`` CPUs). Per job: wall time
(start-up included), rows read and written per second of wall, the job's CPU (plain jobs:
wait4 of the process; Ray: the workers' own tasks are not in it), and per shard its
seconds, its worker's peak RSS and the bytes it read (``rchar``). A benchmark, not a test:
it asserts nothing about speed.

    python loadtest/scale_bench.py --users 1000000 --shards 1,2,4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import serve_bench

# The real-service launchers have one home, the tests' (tests/services.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services import RayCluster, running_redis, start_cluster, start_ray

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "samples" / "fraud" / "feature_repo.yaml"
WINDOW = ["--start", "2025-12-01", "--end", "2026-01-04T00:00:00Z"]


def job(
    data: Path, url: str, work: Path, *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """One ``ferry materialize``: its total line, its shard lines and its own resource use."""
    out, err = (work / "stdout").open("w+"), (work / "stderr").open("w+")
    command = [sys.executable, "-m", "ferry.cli.main", "materialize", str(REPO)]
    command += ["--offline-root", str(data), "--online-store", url, *WINDOW, *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=out, stderr=err, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out.seek(0)
    err.seek(0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(extra) or 'plain job'} failed:\n{err.read()[-3000:]}")
    lines = [json.loads(line) for line in out.read().splitlines()]
    total = lines[-1]
    figures: dict[str, Any] = {
        "wall_s": round(wall, 2),
        "in_job_s": total["seconds"],
        "rows_read": total["rows_read"],
        "rows_written": total["rows_written"],
        "rows_read_per_wall_s": round(total["rows_read"] / wall),
        "rows_written_per_wall_s": round(total["rows_written"] / wall),
        "driver_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "driver_peak_rss_mb": round(usage.ru_maxrss / 1024),
    }
    shards = [line for line in lines if line["kind"] == "shard"]
    if shards:
        figures["shards"] = [
            {
                "shard": line["shard"],
                "seconds": line["seconds"],
                "peak_rss_mb": round(line["peak_rss_bytes"] / 2**20),
                "bytes_read_mb": round(line["bytes_read"] / 2**20, 1),
                "rows_read": sum(
                    v["rows_read"]
                    for v in lines
                    if v["kind"] == "view" and v.get("shard") == line["shard"]
                ),
                "attempts": line["attempts"],
            }
            for line in shards
        ]
        figures["bytes_read_mb_all_shards"] = round(
            sum(line["bytes_read"] for line in shards) / 2**20, 1
        )
    return figures


def flush(cluster_ports: list[int]) -> None:
    for port in cluster_ports:
        subprocess.run(["redis-cli", "-p", str(port), "flushall"], check=True, capture_output=True)


def used_memory_per_key(port: int) -> int:
    """Redis's used_memory over its keys (including its own ~1 MB baseline)."""

    def ask(*command: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(port), *command], check=True, capture_output=True, text=True
        ).stdout

    memory = next(
        line for line in ask("info", "memory").splitlines() if line.startswith("used_memory:")
    )
    return round(int(memory.split(":")[1]) / max(int(ask("dbsize")), 1))


def serve(store: str, args: argparse.Namespace) -> dict[str, Any]:
    report = serve_bench.report_of(
        store,
        *("--seconds", str(args.serve_seconds), "--warmup-s", "0.5", "--no-stream"),
        *("--users", str(args.serve_users), "--concurrency", "4"),
    )
    return {
        str(case["batch"]): {
            "rps": round(case["ferry"]["rps"]),
            "p50_ms": case["ferry"]["p50_ms"],
            "p99_ms": case["ferry"]["p99_ms"],
            "server_cpu_us_per_call": case["ferry"]["server_cpu_us_per_call"],
            "echo_rps": round(case["echo"]["rps"]),
            "rps_ratio_to_echo": case["ratio_to_echo"].get("rps"),
        }
        for case in report["cases"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--row-group", type=int, default=50_000, help="rows per row group")
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-serve", action="store_true", help="materialization only")
    parser.add_argument("--serve-seconds", type=float, default=3.0)
    parser.add_argument("--serve-users", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ferry-scale-bench-"))
    try:
        report = _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = work / "data"
    started = time.perf_counter()
    subprocess.run(
        [
            *(sys.executable, str(ROOT / "datasets" / "fraud.py"), str(data)),
            *("--users", str(args.users), "--merchants", str(max(10, args.users // 20))),
            *("--transactions", str(args.users), "--row-group", str(args.row_group)),
        ],
        check=True,
        capture_output=True,
    )
    source_bytes = sum(p.stat().st_size for p in data.rglob("*.parquet"))
    report: dict[str, Any] = {
        "command": " ".join(["python", "loadtest/scale_bench.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "users": args.users,
        "data_generation_s": round(time.perf_counter() - started, 1),
        "source_mb": round(source_bytes / 2**20, 1),
        "materialize": {},
    }
    cluster = start_cluster(work / "cluster", replicas=0)
    ray: RayCluster | None = None
    try:
        ports = [node.port for node in cluster.nodes]
        with running_redis(work) as redis:
            report["materialize"]["standalone_plain"] = job(data, redis.url, work)
            report["used_memory_per_key_standalone"] = used_memory_per_key(redis.port)
        flush(ports)
        report["materialize"]["cluster_plain"] = job(data, cluster.url, work)
        ray = start_ray(work, cpus=args.ray_cpus)
        for shards in (int(n) for n in args.shards.split(",")):
            flush(ports)
            report["materialize"][f"cluster_ray_{shards}_shards"] = job(
                data,
                cluster.url,
                work,
                "--ray",
                ray.address,
                "--shards",
                str(shards),
                env=ray.environment,
            )
    finally:
        if ray is not None:
            ray.stop()
        cluster.stop()
    if not args.no_serve:
        report["serve_standalone"] = serve("redis", args)
        report["serve_cluster"] = serve("cluster", args)
    return report


if __name__ == "__main__":
    main()

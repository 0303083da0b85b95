"""Materialization benchmark: the fraud data set into a local Redis, beside redis-benchmark.

Starts its own redis-server on a free loopback port (stopped by PID), measures the
pipelined SET rate of `redis-benchmark -P 64 -t set` against it, then runs `ferry
materialize` of the fraud repo at two input sizes and prints, per size: rows/s, the ratio
to the SET rate, peak RSS of the job, and Redis bytes per stored row. A benchmark, not a
test: it asserts nothing about speed.

    python loadtest/materialize_bench.py --users 100000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The real-service launchers have one home, the tests' (tests/services.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services import RedisServer, running_redis

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "samples" / "fraud" / "feature_repo.yaml"


def used_memory(redis: RedisServer) -> int:
    info = redis.cli("info", "memory")
    return int(re.search(r"used_memory:(\d+)", info).group(1))  # type: ignore[union-attr]


def set_rate(redis: RedisServer, requests: int) -> float:
    out = subprocess.run(
        [
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            str(redis.port),
            "-P",
            "64",
            "-t",
            "set",
            "-n",
            str(requests),
            "-q",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    rate = float(re.search(r"SET: ([\d.]+) requests per second", out).group(1))  # type: ignore[union-attr]
    redis.cli("flushall")
    return rate


def materialize(data: Path, redis: RedisServer, work: Path) -> dict[str, object]:
    before = used_memory(redis)
    started = time.perf_counter()
    out, err = (work / "stdout").open("w+"), (work / "stderr").open("w+")
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "materialize",
            str(REPO),
            "--offline-root",
            str(data),
            "--online-store",
            redis.url,
            "--start",
            "2025-12-01",
            "--end",
            "2026-01-04T00:00:00Z",
        ],
        stdout=out,
        stderr=err,
    )
    # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would mix in the generator's).
    _, status, usage = os.wait4(job.pid, 0)
    job.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    out.seek(0)
    err.seek(0)
    if job.returncode != 0:
        raise SystemExit(err.read())
    total = json.loads(out.read().splitlines()[-1])
    keys = int(redis.cli("dbsize")) - 1  # minus the watermark hash
    return {
        "rows_read": total["rows_read"],
        "rows_written": total["rows_written"],
        "job_rows_per_second": total["rows_per_second"],
        "job_rows_written_per_second": round(total["rows_written"] / total["seconds"]),
        "wall_seconds_incl_startup": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "redis_bytes_per_row": round((used_memory(redis) - before) / max(keys, 1)),
        "stored_rows": keys,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="users of the larger run")
    parser.add_argument("--set-requests", type=int, default=2_000_000)
    args = parser.parse_args()
    if shutil.which("redis-benchmark") is None:
        raise SystemExit("redis-benchmark is missing: run bash scripts/install-redis.sh")
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    try:
        _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> None:
    with running_redis(work) as redis:
        baseline = set_rate(redis, args.set_requests)
        results = []
        for users in sorted({max(100, args.users // 10), args.users, args.users * 3}):
            data = work / f"fraud-{users}"
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "datasets" / "fraud.py"),
                    str(data),
                    "--users",
                    str(users),
                    "--merchants",
                    str(max(10, users // 20)),
                    "--transactions",
                    str(users * 2),
                ],
                check=True,
                capture_output=True,
            )
            redis.cli("flushall")
            result = materialize(data, redis, work)
            result["users"] = users
            result["ratio_to_redis_benchmark_set"] = round(
                float(result["job_rows_per_second"]) / baseline, 3
            )  # type: ignore[arg-type]
            results.append(result)
        print(
            json.dumps(
                {"redis_benchmark_set_P64_per_second": round(baseline), "runs": results}, indent=2
            )
        )
        print(
            f"\n{'users':>8} {'rows read':>10} {'read/s':>9} {'written/s':>9} "
            f"{'x SET -P64':>10} {'peak RSS MB':>11} {'Redis B/row':>11}"
        )
        for r in results:
            print(
                f"{r['users']:>8} {r['rows_read']:>10} {r['job_rows_per_second']:>9} "
                f"{r['job_rows_written_per_second']:>9} {r['ratio_to_redis_benchmark_set']:>10} "
                f"{r['peak_rss_mb']:>11} {r['redis_bytes_per_row']:>11}"
            )
        print(f"redis-benchmark -P 64 -t set: {baseline:,.0f} SET/s (same server, same run)")


if __name__ == "__main__":
    main()

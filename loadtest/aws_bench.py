"""DynamoDB and S3 (on moto) beside Redis and local files, in one run.

1. Materialization of the fraud data set into Redis and into DynamoDB: rows written per
   second, Ferry's own CPU per written row (the job's user + system time) and peak RSS;
   then the DynamoDB job run again (every row already stored), each row sent as a PutItem
   (``read_first=false``) beside the default that reads first (``read_first=auto``).
2. Reading the offline store: every view scanned as the materializer scans it, from local
   files and from the same files on S3.
3. Serving (``--serve``): ``serve_bench.py`` against Redis, then against DynamoDB, batches
   1/10/100, with Ferry's server CPU per call beside each store's latency.

moto is far slower than DynamoDB (~2.6 ms of its own per request), so its latencies say
little about AWS; Ferry's CPU per row and per call are what this measures. A benchmark, not
a test: it asserts nothing about speed.

    python loadtest/aws_bench.py --users 20000 --serve
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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
from ferry.core import load_repo
from ferry.stores import open_source
from tests.services import (
    AWS_TEST_ENVIRONMENT,
    MotoServer,
    running_redis,
    start_moto,
    upload_to_s3,
)

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "samples" / "fraud" / "feature_repo.yaml"
WINDOW = ["--start", "2025-12-01", "--end", "2026-01-04T00:00:00Z"]


def materialize(data: str, url: str, work: Path) -> dict[str, Any]:
    """One ``ferry materialize`` job: its figures and its own resource use (wait4)."""
    out, err = (work / "stdout").open("w+"), (work / "stderr").open("w+")
    started = time.perf_counter()
    job = subprocess.Popen(
        [
            *(sys.executable, "-m", "ferry.cli.main", "materialize", str(REPO)),
            *("--offline-root", data, "--online-store", url, *WINDOW),
        ],
        stdout=out,
        stderr=err,
    )
    _, status, usage = os.wait4(job.pid, 0)
    wall = time.perf_counter() - started
    out.seek(0)
    err.seek(0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(err.read())
    total = json.loads(out.read().splitlines()[-1])
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "rows_read": total["rows_read"],
        "rows_written": total["rows_written"],
        "rows_skipped_not_newer": total["rows_skipped_not_newer"],
        "rows_written_per_s": round(total["rows_written"] / total["seconds"]),
        "ferry_cpu_us_per_written_row": (
            round(cpu / total["rows_written"] * 1e6) if total["rows_written"] else None
        ),
        "ferry_cpu_s": round(cpu, 2),
        "job_s": round(total["seconds"], 2),
        "wall_s_incl_startup": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def scan_seconds(root: str) -> dict[str, Any]:
    """Every view read as the materializer reads it (projection, batches), timed."""
    repo = dataclasses.replace(load_repo(REPO), offline_root=root)
    started = time.perf_counter()
    rows = 0
    for view in repo.views.values():
        for batch in open_source(repo, view).to_batches(batch_size=16_384):
            rows += batch.num_rows
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}


def serve(store: str, seconds: float, users: int) -> dict[str, Any]:
    report = serve_bench.report_of(
        store,
        *("--seconds", str(seconds), "--warmup-s", str(min(1.0, seconds / 3))),
        *("--no-stream", "--users", str(users), "--concurrency", "4"),
        # moto answers a BatchGetItem in milliseconds, not DynamoDB's single digits.
        "--serve-flag=--store-timeout-ms=10000",
    )
    out: dict[str, Any] = {}
    for case in report["cases"]:
        figures = {
            "rps": round(case["ferry"]["rps"]),
            "p50_ms": case["ferry"]["p50_ms"],
            "p99_ms": case["ferry"]["p99_ms"],
            "server_cpu_us_per_call": case["ferry"]["server_cpu_us_per_call"],
        }
        if store == "dynamodb":
            # Keys of both views of fraud_v1 go out together, 100 to a BatchGetItem at
            # most; natural batching merges concurrent calls' keys into fewer requests.
            figures["keys_per_call"] = 2 * case["batch"]
            figures["batch_get_items_per_call"] = case["store_requests_per_call"]
        out[str(case["batch"])] = figures
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--serve", action="store_true", help="also run serve_bench on both")
    parser.add_argument("--serve-seconds", type=float, default=3.0)
    args = parser.parse_args()
    os.environ.update(AWS_TEST_ENVIRONMENT)
    work = Path(tempfile.mkdtemp(prefix="ferry-aws-bench-"))
    moto = start_moto()
    try:
        report = _run(args, work, moto)
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


def _run(args: argparse.Namespace, work: Path, moto: MotoServer) -> dict[str, Any]:
    data = work / "data"
    subprocess.run(
        [
            *(sys.executable, str(ROOT / "datasets" / "fraud.py"), str(data)),
            *("--users", str(args.users), "--merchants", str(max(10, args.users // 20))),
            *("--transactions", str(args.users)),
        ],
        check=True,
        capture_output=True,
    )
    s3 = upload_to_s3(data, moto, "ferry-bench")
    table = moto.dynamodb_url("ferry-bench")
    init = [sys.executable, "-m", "ferry.cli.main", "init-store", str(REPO)]
    subprocess.run([*init, "--online-store", table], check=True, capture_output=True)
    report: dict[str, Any] = {"users": args.users}
    with running_redis(work) as redis:
        report["materialize_redis_from_local"] = materialize(str(data), redis.url, work)
    report["materialize_dynamodb_from_s3"] = materialize(s3, table, work)
    # The same job again (every row already stored): each row sent, as before reading first
    # existed, beside the default, which reads first once rows turn out not newer.
    report["again_dynamodb_every_row_sent"] = materialize(s3, f"{table}&read_first=false", work)
    report["again_dynamodb_read_first_auto"] = materialize(s3, table, work)
    report["scan_local"] = scan_seconds(str(data))
    report["scan_s3"] = scan_seconds(s3)
    if args.serve:
        report["serve_redis"] = serve("redis", args.serve_seconds, args.users)
        report["serve_dynamodb"] = serve("dynamodb", args.serve_seconds, args.users)
    return report


if __name__ == "__main__":
    main()

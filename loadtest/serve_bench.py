"""Serving benchmark: Ferry over Redis beside a bare grpc.aio echo server, same client.

Starts its own redis-server, loads the fraud data set (datasets/fraud.py, snapshots over
the last three days) into it, starts `ferry serve` and loadtest/echo_server.py on loopback,
then drives each with the same closed-loop load (several processes, one channel and
CONCURRENCY outstanding calls each, pre-serialized requests) for batches of 1, 10 and 100
entity rows of the 9-feature fraud_v1 service. Reports RPS, rows/s, p50/p90/p99/max and
server CPU per call (from /proc), and Ferry's ratios to the echo. Bounded in time and count.
A benchmark, not a test.

    python loadtest/serve_bench.py --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import grpc.aio
import uvloop
from local_redis import local_redis  # loadtest/local_redis.py

from ferry.api.serving.v1 import serving_pb2

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "samples" / "fraud" / "feature_repo.yaml"
METHOD = "/ferry.api.serving.v1.ServingService/GetOnlineFeatures"
TICKS = os.sysconf("SC_CLK_TCK")


def request_bytes(batch: int, users: int, merchants: int, seed: int) -> list[bytes]:
    """Pre-serialized requests: 90% known entities, 10% unknown, uniform keys."""
    rng = random.Random(seed)
    out = []
    for _ in range(64):
        request = serving_pb2.GetOnlineFeaturesRequest(feature_service="fraud_v1")
        ids = [
            rng.randint(1, users) if rng.random() < 0.9 else users + 1 + rng.randint(0, 9)
            for _ in range(batch)
        ]
        request.entities["user_id"].int64_values.values.extend(ids)
        request.entities["merchant_id"].string_values.values.extend(
            f"m{rng.randint(1, merchants):07d}" for _ in range(batch)
        )
        out.append(request.SerializeToString())
    return out


def client_process(
    target: str,
    payloads: list[bytes],
    concurrency: int,
    seconds: float,
    max_calls: int,
    queue: multiprocessing.Queue,
) -> None:  # type: ignore[type-arg]
    async def run() -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.unary_unary(METHOD)

            async def worker(offset: int) -> None:
                nonlocal errors
                i = offset
                while time.perf_counter() < deadline and len(latencies) < max_calls:
                    started = time.perf_counter()
                    try:
                        await call(payloads[i % len(payloads)], timeout=5)
                        latencies.append(time.perf_counter() - started)
                    except grpc.aio.AioRpcError:
                        errors += 1
                    i += 1

            await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return latencies, errors

    queue.put(uvloop.run(run()))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(target: str, pid: int, payloads: list[bytes], args: argparse.Namespace) -> dict:
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()  # type: ignore[type-arg]
    procs = [
        multiprocessing.get_context("spawn").Process(
            target=client_process,
            args=(target, payloads, args.concurrency, args.seconds, args.max_calls, queue),
        )
        for _ in range(args.processes)
    ]
    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get(timeout=args.seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
    latencies = sorted(x for lat, _ in results for x in lat)
    calls = len(latencies)

    def pick(quantile: float) -> float | None:
        return round(latencies[min(calls - 1, int(quantile * calls))] * 1000, 3) if calls else None

    return {
        "calls": calls,
        "errors": sum(e for _, e in results),
        "rps": round(calls / elapsed),
        "p50_ms": pick(0.5),
        "p90_ms": pick(0.9),
        "p99_ms": pick(0.99),
        "max_ms": round(latencies[-1] * 1000, 3) if calls else None,
        "server_cpu_us_per_call": round(cpu / max(calls, 1) * 1e6),
    }


def start(command: list[str], log: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"{command[:4]} did not start:\n{log.read_text()}")
    return process, json.loads(line)["address"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per case and server")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight per process")
    parser.add_argument("--max-calls", type=int, default=200_000, help="per client process")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--batches", default="1,10,100")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ferry-serve-bench-"))
    processes: list[subprocess.Popen[str]] = []
    try:
        with local_redis(work) as port:
            _run(args, work, port, processes)
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def _run(
    args: argparse.Namespace, work: Path, port: int, processes: list[subprocess.Popen[str]]
) -> None:
    url = f"redis://127.0.0.1:{port}/0"
    merchants = max(10, args.users // 20)
    start_day = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "datasets" / "fraud.py"),
            str(work / "data"),
            "--users",
            str(args.users),
            "--merchants",
            str(merchants),
            "--transactions",
            "1000",
            "--start",
            start_day,
        ],
        check=True,
        capture_output=True,
    )
    ferry = [sys.executable, "-m", "ferry.cli.main"]
    subprocess.run(
        [
            *ferry,
            "materialize-incremental",
            str(REPO),
            "--offline-root",
            str(work / "data"),
            "--online-store",
            url,
            "--end",
            "now",
        ],
        check=True,
        capture_output=True,
    )
    server, ferry_target = start(
        [*ferry, "serve", str(REPO), "--online-store", url, "--port", "0"], work / "serve.log"
    )
    processes.append(server)
    echo, echo_target = start(
        [sys.executable, str(ROOT / "loadtest" / "echo_server.py")], work / "echo.log"
    )
    processes.append(echo)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        payloads = request_bytes(batch, args.users, merchants, seed=batch)
        base = measure(echo_target, echo.pid, payloads, args)
        mine = measure(ferry_target, server.pid, payloads, args)
        rows.append(
            {
                "batch": batch,
                "echo": base,
                "ferry": mine,
                "rps_ratio": round(mine["rps"] / max(base["rps"], 1), 3),
                "cpu_ratio": round(
                    mine["server_cpu_us_per_call"] / max(base["server_cpu_us_per_call"], 1), 2
                ),
                "ferry_rows_per_s": mine["rps"] * batch,
            }
        )
    print(json.dumps({"settings": vars(args), "cases": rows}, indent=2))
    print(
        f"\n{'batch':>5} {'server':>6} {'rps':>7} {'rows/s':>8} {'p50 ms':>7} "
        f"{'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'cpu us/call':>11}"
    )
    for row in rows:
        for name in ("echo", "ferry"):
            m = row[name]
            print(
                f"{row['batch']:>5} {name:>6} {m['rps']:>7} {m['rps'] * row['batch']:>8} "
                f"{m['p50_ms']:>7} {m['p90_ms']:>7} {m['p99_ms']:>7} {m['max_ms']:>7} "
                f"{m['server_cpu_us_per_call']:>11}"
            )
        print(
            f"{'':>5} {'ratio':>6} {row['rps_ratio']:>7} {'':>8} {'':>7} {'':>7} {'':>7} "
            f"{'':>7} {row['cpu_ratio']:>11}"
        )
    errors = sum(row[n]["errors"] for row in rows for n in ("echo", "ferry"))
    if errors:
        raise SystemExit(f"{errors} calls failed; see {work}")


if __name__ == "__main__":
    main()

"""Serving benchmark: Ferry over Redis beside a bare grpc.aio echo, same client, same run.

Sets up everything itself on loopback: a redis-server (or, with ``--store dynamodb``, a
moto server holding a DynamoDB table), the fraud data set
(datasets/fraud.py, snapshots over the last three days) materialized into it, `ferry serve`
and loadtest/echo_server.py. Then, with loadtest/loadgen.py's closed loop, for batches of 1,
10 and 100 entity rows of the 9-feature fraud_v1 service (2 views): RPS, rows/s,
p50/p90/p99/p99.9, server CPU per call, and each as a ratio to the echo. With ``--sweep``,
the open loop at fractions of the closed-loop maximum for batch 1, with a latency plot.
Each batch is also run over StreamOnlineFeatures (against a streaming echo) unless
``--no-stream``.
``--h2load`` adds the same cases driven by h2load (loadtest/h2load_run.py), whose client
costs less CPU. Bounded in time and count. A benchmark, not a test.

    python loadtest/serve_bench.py --seconds 5 --sweep 0.1,0.25,0.5,0.75 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import loadgen
import workload as workloads
from prometheus_client.parser import text_string_to_metric_families

# The real-service launchers have one home, the tests' (tests/services.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services import (
    AWS_TEST_ENVIRONMENT,
    free_port,
    running_redis,
    start_cluster,
    start_moto,
)

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "samples" / "fraud" / "feature_repo.yaml"


def start(
    command: list[str], log: Path, processes: int, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """A server whose every process prints a JSON line with its address once it serves
    (``env``: its environment, e.g. another revision's code on PYTHONPATH)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env
    )
    assert process.stdout is not None
    # Wait for all of them: CPU is read from the processes listening when the load starts.
    lines = [process.stdout.readline() for _ in range(processes)]
    if not all(lines):
        process.terminate()
        process.wait(timeout=60)
        raise SystemExit(f"{command[:4]} did not start:\n{log.read_text()}")
    return process, json.loads(lines[0])["address"]


def report_of(store: str, *flags: str) -> dict[str, Any]:
    """This benchmark run in a process of its own against ``store``: its JSON report
    (for the benchmarks that compare stores: aws_bench.py, scale_bench.py)."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), "--store", store, *flags],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"serve_bench --store {store} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout[: done.stdout.rindex("}") + 1]))


def load_data(work: Path, url: str, users: int) -> None:
    """The fraud data set over the last three days, materialized into the store at ``url``."""
    start_day = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    fraud = [sys.executable, str(ROOT / "datasets" / "fraud.py"), str(work / "data")]
    sizes = ["--users", str(users), "--merchants", str(max(10, users // 20))]
    subprocess.run(
        [*fraud, *sizes, "--transactions", "1000", "--start", start_day],
        check=True,
        capture_output=True,
    )
    materialize = [sys.executable, "-m", "ferry.cli.main", "materialize-incremental", str(REPO)]
    subprocess.run(
        [*materialize, "--offline-root", str(work / "data"), "--online-store", url, "--end", "now"],
        check=True,
        capture_output=True,
    )


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def h2load_case(target: str, batch: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "loadtest" / "h2load_run.py"), str(REPO)]
    command += ["--offline-root", str(work / "data"), "--target", target, "--batch", str(batch)]
    command += ["--calls", str(args.h2load_calls)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"h2load_run.py failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    loadgen.add_arguments(parser)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--batches", default="1,10,100")
    parser.add_argument("--skew", choices=["uniform", "zipf"], default="uniform")
    parser.add_argument("--hit-ratio", type=float, default=0.9)
    parser.add_argument("--sweep", help="open loop for batch 1 at these fractions of its max")
    parser.add_argument("--h2load", action="store_true", help="also drive each case with h2load")
    parser.add_argument(
        "--no-stream", action="store_true", help="skip the StreamOnlineFeatures cases"
    )
    parser.add_argument("--h2load-calls", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1, help="ferry serve --workers")
    parser.add_argument(
        "--serve-flag",
        action="append",
        default=[],
        help="pass a flag to ferry serve, e.g. --serve-flag=--store-reads-in-flight=0",
    )
    parser.add_argument(
        "--store",
        choices=["redis", "cluster", "dynamodb"],
        default="redis",
        help="the online store: a redis-server, a Redis Cluster of 3 primaries, or DynamoDB "
        "on a moto server (each started here on loopback)",
    )
    parser.add_argument("--out", type=Path, help="write results.json (and plots) here")
    args = parser.parse_args()
    settings = loadgen.settings_of(args)
    work = Path(tempfile.mkdtemp(prefix="ferry-serve-bench-"))
    try:
        if args.store == "dynamodb":
            report = _on_dynamodb(args, settings, work)
        elif args.store == "cluster":
            cluster = start_cluster(work / "cluster", replicas=0)
            try:
                report = _run(args, settings, work, cluster.url)
            finally:
                cluster.stop()
        else:
            with running_redis(work) as redis:
                report = _run(args, settings, work, redis.url)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    print_table(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    errors = sum(
        sum(case[name]["errors"].values()) for case in report["cases"] for name in ("ferry", "echo")
    )
    if errors:
        raise SystemExit(f"{errors} calls failed")


def _on_dynamodb(
    args: argparse.Namespace, settings: loadgen.Settings, work: Path
) -> dict[str, Any]:
    """``_run`` against a DynamoDB table on a moto server started (and stopped) here."""
    os.environ.update(AWS_TEST_ENVIRONMENT)
    moto = start_moto()
    try:
        url = moto.dynamodb_url("ferry-bench")
        init = [sys.executable, "-m", "ferry.cli.main", "init-store", str(REPO)]
        subprocess.run([*init, "--online-store", url], check=True, capture_output=True)
        # The server's metrics count what it sends DynamoDB (ferry_store_requests_total):
        # BatchGetItem requests per call are measured, not worked out.
        return _run(args, settings, work, url, metrics_port=free_port())
    finally:
        moto.stop()


def _run(
    args: argparse.Namespace,
    settings: loadgen.Settings,
    work: Path,
    url: str,
    metrics_port: int | None = None,
) -> dict[str, Any]:
    load_data(work, url, args.users)
    repo = workloads.load(str(REPO), str(work / "data"))
    ferry = [sys.executable, "-m", "ferry.cli.main", "serve", str(REPO), "--online-store", url]
    ferry += ["--port", "0", "--workers", str(args.workers), *args.serve_flag]
    metrics_ports = []
    if metrics_port is not None:  # worker I serves its metrics on PORT + I
        ferry += ["--metrics-port", str(metrics_port)]
        metrics_ports = [metrics_port + i for i in range(args.workers)]
    server, target = start(ferry, work / "serve.log", args.workers)
    report: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["python", "loadtest/serve_bench.py", *sys.argv[1:]]),
        "settings": vars(args) | {"out": str(args.out)},
        "cases": [],
    }
    try:
        pids = loadgen.listening_pids(int(target.rsplit(":", 1)[1]))
        # The echo runs in as many processes as Ferry, so CPU per call compares like with like.
        with loadgen.echo_server(args.workers) as (echo_target, echo_pids):
            for batch in (int(b) for b in args.batches.split(",")):
                workload = workloads.Workload(
                    batch=batch, skew=args.skew, hit_ratio=args.hit_ratio, seed=batch
                )
                payloads = workloads.payloads(repo, workload)
                method = workload.method
                base = loadgen.run(echo_target, method, payloads, settings, None, echo_pids)
                sent = store_requests(metrics_ports) if metrics_ports else (0.0, 0.0)
                mine = loadgen.run(target, method, payloads, settings, None, pids)
                case = {
                    "batch": batch,
                    "echo": base,
                    "ferry": mine,
                    "ferry_rows_per_s": round(mine["rps"] * batch),
                    "ratio_to_echo": loadgen.ratios(mine, base),
                }
                if metrics_ports:
                    requests, calls = store_requests(metrics_ports)
                    case["store_requests_per_call"] = round(
                        (requests - sent[0]) / max(1.0, calls - sent[1]), 3
                    )
                if not args.no_stream:
                    case["stream"] = _stream_case(
                        repo, workload, settings, target, pids, echo_target, echo_pids
                    )
                if args.h2load:
                    case["h2load"] = h2load_case(target, batch, work, args)
                report["cases"].append(case)
            if args.sweep:
                report["sweep"] = _sweep(args, settings, repo, target, pids, echo_target, echo_pids)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return report


def store_requests(ports: list[int]) -> tuple[float, float]:
    """BatchGetItem requests the servers at these metrics ports have sent so far, and the
    GetOnlineFeatures calls they have answered (warm-up calls included, as in the first)."""
    requests = calls = 0.0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "ferry_store_requests_total":
                    requests += sample.value * (sample.labels["request"] == "batch_get_item")
                elif sample.name == "grpc_server_handled_total":
                    calls += sample.value * (sample.labels["grpc_method"] == "GetOnlineFeatures")
    return requests, calls


def _stream_case(
    repo: Any,
    workload: workloads.Workload,
    settings: loadgen.Settings,
    target: str,
    pids: list[int],
    echo_target: str,
    echo_pids: list[int],
) -> dict[str, Any]:
    """The same lookups over StreamOnlineFeatures, against a streaming echo."""
    streamed = dataclasses.replace(workload, kind="stream")
    payloads = workloads.payloads(repo, streamed)
    over = dataclasses.replace(settings, stream=True)
    base = loadgen.run(echo_target, streamed.method, payloads, over, None, echo_pids)
    mine = loadgen.run(target, streamed.method, payloads, over, None, pids)
    return {"echo": base, "ferry": mine, "ratio_to_echo": loadgen.ratios(mine, base)}


def _sweep(
    args: argparse.Namespace,
    settings: loadgen.Settings,
    repo: Any,
    target: str,
    pids: list[int],
    echo_target: str,
    echo_pids: list[int],
) -> dict[str, Any]:
    """Batch 1, open loop at fractions of each server's own closed-loop max."""
    fractions = [float(f) for f in args.sweep.split(",")]
    workload = workloads.Workload(batch=1, skew=args.skew, hit_ratio=args.hit_ratio)
    payloads = workloads.payloads(repo, workload)
    sweeps = {
        "ferry": loadgen.sweep(target, workload.method, payloads, settings, fractions, pids),
        "echo": loadgen.sweep(
            echo_target, workload.method, payloads, settings, fractions, echo_pids
        ),
    }
    if args.out:
        title = loadgen.plot_title(
            "GetOnlineFeatures fraud_v1", 1, args.store, settings, args.workers
        )
        loadgen.plot(sweeps, title, args.out / "sweep_b1.png")
    return sweeps


def print_table(report: dict[str, Any]) -> None:
    """The closed-loop cases as a Markdown table (the benchmark page's format)."""
    print(
        "\n| batch | server | RPS | rows/s | p50 ms | p99 ms | p99.9 ms | CPU µs/call |"
        " CPU ratio | RPS ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case in report["cases"]:
        runs = [("", case)] + ([("stream ", case["stream"])] if "stream" in case else [])
        for label, run in runs:
            for name in ("echo", "ferry"):
                m = run[name]
                ratio = run["ratio_to_echo"] if name == "ferry" else {}
                print(
                    f"| {case['batch']} | {label}{name} | {m['rps']:,.0f} | "
                    f"{m['rps'] * case['batch']:,.0f} | {m['p50_ms']} | {m['p99_ms']} | "
                    f"{m['p999_ms']} | {m['server_cpu_us_per_call']} | "
                    f"{ratio.get('server_cpu_per_call', '')} | {ratio.get('rps', '')} |"
                )
    for name, result in report.get("sweep", {}).items():
        for point in result["open"]:
            print(
                f"sweep {name}: offered {point['offered_rps']:,.0f}/s "
                f"({point['fraction_of_max']:.0%} of max {result['max']['rps']:,.0f}): "
                f"p50 {point['p50_ms']} ms, p99 {point['p99_ms']} ms, p99.9 {point['p999_ms']} ms"
            )


if __name__ == "__main__":
    main()

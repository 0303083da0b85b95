"""Near cache benchmark: `ferry serve` with and without ``--cache-entries`` on one Redis.

Sets up on loopback a redis-server and the fraud data set (``--users`` users) materialized
into it, then two servers over that one store, alike but for the cache (both export
metrics, so both pay for them). For each batch size and key popularity (uniform, Zipf
s=1.1, with 10% misses, over ``--distinct`` different requests), closed-loop runs
alternate between the two servers ``--repeats`` times; the table gives medians of calls/s,
p50/p99 and server CPU per call, the cached server's hit rate in those runs (from its
``ferry_near_cache_lookups_total``), and each as a ratio to the server without a cache.
A bare grpc.aio echo (loadtest/echo_server.py) runs in the same rotation, for the distance
to the floor. Bounded in time and count. A benchmark, not a test.

    python loadtest/cache_bench.py --users 100000 --seconds 5 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import loadgen
import serve_bench
import workload as workloads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services import free_port, running_redis

REPO = serve_bench.REPO


def lookups(metrics_port: int) -> tuple[float, float]:
    """The cached server's (hits, misses) so far."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    found = {"hit": 0.0, "miss": 0.0}
    for line in text.splitlines():
        if line.startswith("ferry_near_cache_lookups_total{"):
            result = line.split('result="')[1].split('"')[0]
            found[result] = float(line.rsplit(" ", 1)[1])
    return found["hit"], found["miss"]


def serve(url: str, work: Path, name: str, *flags: str) -> tuple[Any, str, list[int], int]:
    """A `ferry serve` process: (process, target, pids, metrics port)."""
    metrics_port = free_port()
    command = [sys.executable, "-m", "ferry.cli.main", "serve", str(REPO), "--online-store", url]
    command += ["--port", "0", "--metrics-port", str(metrics_port), *flags]
    process, target = serve_bench.start(command, work / f"{name}.log", 1)
    return process, target, loadgen.listening_pids(int(target.rsplit(":", 1)[1])), metrics_port


def median_of(runs: list[dict[str, Any]], field: str) -> float:
    return round(statistics.median(run[field] for run in runs), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    loadgen.add_arguments(parser)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batches", default="1,100")
    parser.add_argument("--skews", default="uniform,zipf")
    parser.add_argument("--distinct", type=int, default=20_000, help="different requests")
    parser.add_argument("--cache-entries", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write results.json here")
    args = parser.parse_args()
    settings = loadgen.settings_of(args)
    work = Path(tempfile.mkdtemp(prefix="ferry-cache-bench-"))
    report: dict[str, Any] = {
        "machine": serve_bench.machine(),
        "command": " ".join(["python", "loadtest/cache_bench.py", *sys.argv[1:]]),
        "cases": [],
    }
    servers = []
    try:
        with running_redis(work) as redis:
            serve_bench.load_data(work, redis.url, args.users)
            repo = workloads.load(str(REPO), str(work / "data"))
            plain = serve(redis.url, work, "plain")
            servers.append(plain[0])
            cached = serve(redis.url, work, "cached", "--cache-entries", str(args.cache_entries))
            servers.append(cached[0])
            with loadgen.echo_server(1) as (echo_target, echo_pids):
                echo = (None, echo_target, echo_pids, 0)
                for batch in (int(b) for b in args.batches.split(",")):
                    for skew in args.skews.split(","):
                        report["cases"].append(
                            _case(args, settings, repo, batch, skew, plain, cached, echo)
                        )
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    print_table(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    errors = sum(
        sum(run["errors"].values())
        for case in report["cases"]
        for name in ("echo", "plain", "cached")
        for run in case[name]
    )
    if errors:
        raise SystemExit(f"{errors} calls failed")


def _case(
    args: argparse.Namespace,
    settings: loadgen.Settings,
    repo: Any,
    batch: int,
    skew: str,
    plain: tuple[Any, str, list[int], int],
    cached: tuple[Any, str, list[int], int],
    echo: tuple[Any, str, list[int], int],
) -> dict[str, Any]:
    workload = workloads.Workload(batch=batch, skew=skew, distinct=args.distinct, seed=batch)
    payloads = workloads.payloads(repo, workload)
    runs: dict[str, list[dict[str, Any]]] = {"echo": [], "plain": [], "cached": []}
    hit_rates = []
    for _ in range(args.repeats):  # interleaved: all see the same machine
        for name, server in (("echo", echo), ("plain", plain)):
            runs[name].append(
                loadgen.run(server[1], workload.method, payloads, settings, None, server[2])
            )
        before = lookups(cached[3])
        runs["cached"].append(
            loadgen.run(cached[1], workload.method, payloads, settings, None, cached[2])
        )
        after = lookups(cached[3])
        hits, misses = after[0] - before[0], after[1] - before[1]
        hit_rates.append(hits / max(hits + misses, 1))
    case: dict[str, Any] = {"batch": batch, "skew": skew, **runs}
    case["hit_rate"] = round(statistics.median(hit_rates), 3)
    fields = ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_call")
    case["median"] = {
        name: {field: median_of(runs[name], field) for field in fields} for name in runs
    }
    for name, base in (("cached_to_plain", "plain"), ("cached_to_echo", "echo")):
        case[name] = {
            field: round(case["median"]["cached"][field] / case["median"][base][field], 2)
            for field in fields
        }
    case["plain_to_echo"] = {
        field: round(case["median"]["plain"][field] / case["median"]["echo"][field], 2)
        for field in fields
    }
    return case


def print_table(report: dict[str, Any]) -> None:
    """Medians per case as a Markdown table (the benchmark page's format)."""
    print(
        "\n| batch | keys | server | hit rate | calls/s | p50 ms | p99 ms | CPU µs/call |"
        " CPU vs no cache | calls/s vs no cache | CPU vs echo | calls/s vs echo |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in report["cases"]:
        for name in ("echo", "plain", "cached"):
            m = case["median"][name]
            to_plain = case["cached_to_plain"] if name == "cached" else {}
            to_echo = case.get(f"{name}_to_echo", {})
            print(
                f"| {case['batch']} | {case['skew']} | {name} | "
                f"{case['hit_rate'] if name == 'cached' else ''} | {m['rps']:,.0f} | "
                f"{m['p50_ms']} | {m['p99_ms']} | {m['server_cpu_us_per_call']} | "
                f"{to_plain.get('server_cpu_us_per_call', '')} | {to_plain.get('rps', '')} | "
                f"{to_echo.get('server_cpu_us_per_call', '')} | {to_echo.get('rps', '')} |"
            )


if __name__ == "__main__":
    main()

"""Ferry's own gRPC load generator: closed and open loop, bounded in count and time.

Closed loop: PROCESSES client processes, each with CHANNELS channels and CONCURRENCY calls
always in flight; measures the most a server does at that concurrency.

Open loop: a fixed arrival rate, split over the processes. Each call has an intended send
time (start + i / rate); its latency is counted from that time, not from when it was really
sent, so a slow server (or a client that falls behind) shows up in the percentiles instead
of silently lowering the load (no coordinated omission). ``--sweep`` runs the closed loop to
find the most the server does, then the open loop at fractions of it, and plots latency
percentiles against offered load.

Every case is also run against loadtest/echo_server.py (a bare grpc.aio echo) with the same
settings unless ``--no-echo``, and Ferry's figures are printed as ratios to it. Server CPU
per call is read from /proc for every process listening on the target port, when the server
runs on this machine.

    python loadtest/loadgen.py samples/fraud/feature_repo.yaml --target 127.0.0.1:6570 \
        --batch 10 --mode closed --seconds 10
    python loadtest/loadgen.py samples/fraud/feature_repo.yaml --target 127.0.0.1:6570 \
        --sweep 0.1,0.25,0.5,0.75,0.9 --plot /tmp/b1.png

Prints one JSON document (RPS, p50/p90/p99/p99.9/max in ms, errors by status code, server
CPU per call, ratios to the echo).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import uvloop
import workload as workloads  # loadtest/workload.py

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")
_STREAM_ERROR_TAG = b"\x12"  # StreamOnlineFeaturesResponse.error (field 2, bytes)
_MAX_OPEN_IN_FLIGHT = 10_000
"""Open loop: calls outstanding per process past which new arrivals are counted as
``CLIENT_OVERLOADED`` instead of sent (the server has stopped keeping up by then)."""


@dataclass(frozen=True)
class Settings:
    """How to drive one case.

    Attributes:
        seconds: Measured duration of a run (per process).
        max_calls: Upper bound on calls of a run, over all processes.
        processes: Client processes (Python clients are one core each).
        channels: gRPC channels (HTTP/2 connections) per process.
        concurrency: Closed loop: calls in flight per process.
        timeout_s: Deadline of each call.
        warmup_s: An unmeasured run of this length before each measured one.
        stream: Closed loop over StreamOnlineFeatures: one stream per channel, CONCURRENCY
            lookups in flight on each (latency from each lookup's write to its answer).
        tls_ca: Connect with TLS, trusting this PEM CA file; None for plaintext.
        tls_cert: A client certificate (PEM) for a server that requires mTLS.
        tls_key: Its private key.
        tls_server_name: The name the server's certificate must carry, if not the host.
        token: A bearer token sent with every call.
    """

    seconds: float = 5.0
    max_calls: int = 500_000
    processes: int = 2
    channels: int = 1
    concurrency: int = 16
    timeout_s: float = 5.0
    warmup_s: float = 0.5
    stream: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_server_name: str | None = None
    token: str | None = None


def _channel(target: str, settings: Settings) -> grpc.aio.Channel:
    """A channel to ``target``: plaintext, or TLS with the settings' CA file."""
    if settings.tls_ca is None:
        return grpc.aio.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        Path(settings.tls_ca).read_bytes(),
        Path(settings.tls_key).read_bytes() if settings.tls_key else None,
        Path(settings.tls_cert).read_bytes() if settings.tls_cert else None,
    )
    name = settings.tls_server_name
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.aio.secure_channel(target, credentials, options)


def _client(
    target: str,
    method: str,
    payloads: list[bytes],
    settings: Settings,
    rate: float | None,
    queue: Any,
) -> None:
    """One client process: runs the closed loop, or the open loop at ``rate``/s."""
    max_calls = max(1, settings.max_calls // settings.processes)

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        codes: Counter[str] = Counter()
        channels = [_channel(target, settings) for _ in range(settings.channels)]
        calls = [c.unary_unary(method) for c in channels]
        metadata = (("authorization", f"Bearer {settings.token}"),) if settings.token else None
        lag = 0.0

        async def one(i: int, intended: float) -> None:
            try:
                await calls[i % len(calls)](
                    payloads[i % len(payloads)], timeout=settings.timeout_s, metadata=metadata
                )
                latencies.append(time.perf_counter() - intended)
            except grpc.aio.AioRpcError as err:
                codes[err.code().name] += 1

        async def stream_on(channel: grpc.aio.Channel, offset: int) -> None:
            call = channel.stream_stream(method)(metadata=metadata)
            sent: deque[float] = deque()
            window = asyncio.Semaphore(settings.concurrency)

            async def write() -> None:
                i = offset
                while time.perf_counter() < deadline and len(latencies) + len(sent) < max_calls:
                    await window.acquire()
                    sent.append(time.perf_counter())
                    await call.write(payloads[i % len(payloads)])
                    i += 1
                await call.done_writing()

            async def read() -> None:
                async for answer in call:
                    latencies.append(time.perf_counter() - sent.popleft())
                    if answer[:1] == _STREAM_ERROR_TAG:
                        codes["LOOKUP_ERROR"] += 1
                    window.release()

            try:
                await asyncio.gather(write(), read())
            except grpc.aio.AioRpcError as err:
                codes[err.code().name] += 1

        started = time.perf_counter()
        deadline = started + settings.seconds
        if settings.stream:
            await asyncio.gather(*(stream_on(c, k) for k, c in enumerate(channels)))
        elif rate is None:

            async def worker(offset: int) -> None:
                i = offset
                while time.perf_counter() < deadline and len(latencies) < max_calls:
                    await one(i, time.perf_counter())
                    i += settings.concurrency

            await asyncio.gather(*(worker(k) for k in range(settings.concurrency)))
        else:
            total = min(max_calls, int(settings.seconds * rate))
            pending: set[asyncio.Task[None]] = set()
            i = 0
            while i < total:
                now = time.perf_counter()
                # Send every call whose intended time has come; timers are ~1 ms coarse.
                while i < total and started + i / rate <= now:
                    intended = started + i / rate
                    lag = max(lag, now - intended)
                    if len(pending) >= _MAX_OPEN_IN_FLIGHT:
                        codes["CLIENT_OVERLOADED"] += 1
                    else:
                        task = asyncio.create_task(one(i, intended))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    i += 1
                if i < total:
                    await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            if pending:
                await asyncio.wait(pending, timeout=settings.timeout_s + 1)
        elapsed = time.perf_counter() - started
        for channel in channels:
            await channel.close()
        return {
            "latencies": latencies,
            "codes": dict(codes),
            "elapsed": elapsed,
            "send_lag_s": lag,
        }

    queue.put(uvloop.run(run()))


def listening_pids(port: int) -> list[int]:
    """Processes of this machine listening on a TCP port (several with SO_REUSEPORT)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            pids.append(int(entry.name))
    return sorted(pids)


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of processes so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def run(
    target: str,
    method: str,
    payloads: list[bytes],
    settings: Settings,
    rate: float | None = None,
    server_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """One measured run (after a warm-up), closed loop or open at ``rate`` calls/s."""
    if settings.warmup_s > 0:
        warm = Settings(**{**asdict(settings), "seconds": settings.warmup_s, "warmup_s": 0})
        _spawn(target, method, payloads, warm, rate)
    cpu_before = cpu_seconds(server_pids) if server_pids else 0.0
    results, elapsed = _spawn(target, method, payloads, settings, rate)
    cpu = cpu_seconds(server_pids) - cpu_before if server_pids else None
    latencies = sorted(x for r in results for x in r["latencies"])
    codes: Counter[str] = Counter()
    for r in results:
        codes.update(r["codes"])
    calls = len(latencies)

    def quantile(q: float) -> float | None:
        return round(latencies[min(calls - 1, int(q * calls))] * 1000, 3) if calls else None

    return {
        "mode": "stream" if settings.stream else ("closed" if rate is None else "open"),
        "offered_rps": rate,
        "calls": calls,
        "errors": dict(codes),
        "rps": round(calls / elapsed, 1),
        "p50_ms": quantile(0.5),
        "p90_ms": quantile(0.9),
        "p99_ms": quantile(0.99),
        "p999_ms": quantile(0.999),
        "max_ms": round(latencies[-1] * 1000, 3) if calls else None,
        "max_send_lag_ms": round(max(r["send_lag_s"] for r in results) * 1000, 3),
        "server_cpu_us_per_call": None if cpu is None else round(cpu / max(calls, 1) * 1e6, 1),
        "server_cpu_s": cpu,  # failed calls too (outage_log_bench divides by the errors)
    }


def _spawn(
    target: str, method: str, payloads: list[bytes], settings: Settings, rate: float | None
) -> tuple[list[dict[str, Any]], float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    share = None if rate is None else rate / settings.processes
    procs = [
        context.Process(target=_client, args=(target, method, payloads, settings, share, queue))
        for _ in range(settings.processes)
    ]
    for p in procs:
        p.start()
    # Bounded: a client that does not report within its run time plus a margin is a failure.
    limit = settings.seconds + settings.timeout_s + 60
    results = [queue.get(timeout=limit) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    # The run lasted as long as its slowest process.
    return results, max(r["elapsed"] for r in results)


def sweep(
    target: str,
    method: str,
    payloads: list[bytes],
    settings: Settings,
    fractions: Sequence[float],
    server_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """The closed-loop maximum, then the open loop at each fraction of it."""
    peak = run(target, method, payloads, settings, None, server_pids)
    points = [
        run(target, method, payloads, settings, max(1.0, f * peak["rps"]), server_pids)
        for f in fractions
    ]
    for fraction, point in zip(fractions, points, strict=True):
        point["fraction_of_max"] = fraction
    return {"max": peak, "open": points}


@contextmanager
def echo_server(workers: int = 1) -> Iterator[tuple[str, list[int]]]:
    """loadtest/echo_server.py on a free loopback port, in ``workers`` processes:
    (target, their pids); stopped by PID."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "echo_server.py"), "0", str(workers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(workers)]
        if not all(lines):
            raise SystemExit("loadtest/echo_server.py did not start")
        yield json.loads(lines[0])["address"], [json.loads(line)["pid"] for line in lines]
    finally:
        process.terminate()
        process.wait(timeout=30)


def ratios(mine: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    """Ferry's figures over the echo's."""

    def over(key: str) -> float | None:
        a, b = mine.get(key), base.get(key)
        return round(a / b, 3) if a is not None and b else None

    return {
        "rps": over("rps"),
        "p50": over("p50_ms"),
        "p99": over("p99_ms"),
        "server_cpu_per_call": over("server_cpu_us_per_call"),
    }


def plot_title(call: str, batch: int, store: str, settings: Settings, workers: int) -> str:
    """What a sweep plot shows: the call, batch size, store, server processes, and the
    closed loop whose maximum the offered loads are fractions of."""
    return (
        f"{call}, batch {batch}, store {store}, ferry workers {workers}\n"
        f"open loop at fractions of the closed-loop max: {settings.concurrency} in flight, "
        f"{settings.processes} client process(es), {settings.channels} channel(s) each"
    )


def plot(sweeps: dict[str, dict[str, Any]], title: str, path: Path) -> None:
    """Latency percentiles against offered load, one colour per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    styles = {"p50_ms": "-", "p99_ms": "--", "p999_ms": ":"}
    for (name, result), colour in zip(sweeps.items(), ("tab:blue", "tab:grey"), strict=False):
        points = result["open"]
        for key, style in styles.items():
            axes.plot(
                [p["offered_rps"] for p in points],
                [p[key] for p in points],
                style,
                color=colour,
                marker="o",
                label=f"{name} {key.removesuffix('_ms').replace('p999', 'p99.9')}",
            )
    axes.set_yscale("log")
    axes.set_xlabel("offered load (calls/s, open loop)")
    axes.set_ylabel("latency from intended send time (ms)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run settings' command-line flags."""
    defaults = Settings()
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--max-calls", type=int, default=defaults.max_calls)
    parser.add_argument("--processes", type=int, default=defaults.processes)
    parser.add_argument("--channels", type=int, default=defaults.channels)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--timeout-s", type=float, default=defaults.timeout_s)
    parser.add_argument("--warmup-s", type=float, default=defaults.warmup_s)
    parser.add_argument(
        "--stream",
        action="store_true",
        help="GetOnlineFeatures lookups over StreamOnlineFeatures streams (closed loop)",
    )
    parser.add_argument("--tls-ca", help="connect with TLS, trusting this PEM CA file")
    parser.add_argument("--tls-cert", help="client certificate (PEM), for a server with mTLS")
    parser.add_argument("--tls-key", help="private key of --tls-cert")
    parser.add_argument("--tls-server-name", help="name to expect in the server's certificate")
    parser.add_argument(
        "--token", default=os.environ.get("FERRY_TOKEN"), help="bearer token (default $FERRY_TOKEN)"
    )


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings the parsed flags describe, checked for bounds."""
    if args.seconds <= 0 or args.seconds > 600:
        raise SystemExit("--seconds must be within (0, 600]: every load is bounded in time")
    if args.max_calls < 1:
        raise SystemExit("--max-calls must be at least 1")
    return workloads.from_namespace(Settings, args)


def check_loopback(target: str) -> None:
    """Refuse anything but a loopback target: load is never sent to another machine."""
    host = target.rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit(f"--target {target}: only loopback targets (127.0.0.1, ::1) are allowed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", help="the feature repo file the server serves")
    parser.add_argument("--offline-root", help="override the repo's offline store root")
    parser.add_argument("--target", default="127.0.0.1:6570")
    parser.add_argument("--mode", choices=["closed", "open"], default="closed")
    parser.add_argument("--rate", type=float, help="open loop: calls per second")
    parser.add_argument("--sweep", help="open loop at these fractions of the closed-loop max")
    parser.add_argument("--plot", type=Path, help="with --sweep: write a PNG plot here")
    parser.add_argument("--no-echo", action="store_true", help="skip the echo baseline")
    parser.add_argument(
        "--store",
        default="not given",
        help="the online store the server reads, for the plot's title (e.g. redis)",
    )
    workloads.add_arguments(parser)
    add_arguments(parser)
    args = parser.parse_args()
    check_loopback(args.target)
    settings = settings_of(args)
    workload = workloads.from_arguments(args)
    if settings.stream and workload.kind != "online":
        raise SystemExit("--stream streams GetOnlineFeatures lookups: use --kind online")
    if settings.stream:
        workload = dataclasses.replace(workload, kind="stream")
    payloads = workloads.payloads(workloads.load(args.repo, args.offline_root), workload)
    port = int(args.target.rsplit(":", 1)[1])
    pids = listening_pids(port)
    report: dict[str, Any] = {
        "target": args.target,
        "method": workload.method,
        "workload": asdict(workload),
        "settings": asdict(settings),
        "server_pids": pids,
    }

    def measure(target: str, server_pids: Sequence[int]) -> dict[str, Any]:
        if args.sweep:
            fractions = [float(f) for f in args.sweep.split(",")]
            return sweep(target, workload.method, payloads, settings, fractions, server_pids)
        rate = args.rate if args.mode == "open" else None
        if args.mode == "open" and not rate:
            raise SystemExit("--mode open needs --rate")
        return run(target, workload.method, payloads, settings, rate, server_pids)

    report["ferry"] = measure(args.target, pids)
    if not args.no_echo:
        with echo_server(len(pids) or 1) as (echo_target, echo_pids):
            report["echo"] = measure(echo_target, echo_pids)
        if not args.sweep:
            report["ratio_to_echo"] = ratios(report["ferry"], report["echo"])
        else:
            report["ratio_to_echo"] = ratios(report["ferry"]["max"], report["echo"]["max"])
    if args.sweep and args.plot:
        shown = {"ferry": report["ferry"]}
        if "echo" in report:
            shown["echo"] = report["echo"]
        call = workload.method.rsplit("/", 1)[-1]
        title = plot_title(call, workload.batch, args.store, settings, len(pids) or 1)
        plot(shown, title, args.plot)
        report["plot"] = str(args.plot)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

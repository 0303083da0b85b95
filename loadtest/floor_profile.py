"""Where a call's server CPU goes, Ferry beside the bare grpc.aio echo, at one batch size.

Sets up what serve_bench.py sets up (a redis-server, the fraud data set materialized,
``ferry serve`` and loadtest/echo_server.py, one process each), drives each server with the
same closed loop, and samples the server's threads meanwhile with py-spy (``--native``,
only samples where a thread is on CPU). Each sample is put in one category by its stack:

* ``grpc poller and other threads``: any thread but the main one (gRPC's completion-queue
  poller, mostly);
* ``Ferry's Python``: the main thread running a frame of Ferry's own code;
* ``native code Ferry calls``: native code (hiredis, numpy, struct, protobuf) under a frame
  of Ferry's;
* ``grpc.aio (cygrpc)``: gRPC's compiled asyncio layer and the core under it, not under a
  Ferry frame;
* ``event loop and system calls``: uvloop, asyncio and the system calls they make;
* ``other Python``: the rest (the standard library, interpreter start-up frames).

A category's µs per call is its share of the samples times the server's CPU per call
(from /proc, as loadgen.py measures it). Sampling is statistical: quote shares to a few
percent. A benchmark, not a test.

    python loadtest/floor_profile.py --batch 1 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import loadgen
import serve_bench
import workload as workloads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services import running_redis

OURS = ("cli/", "client/", "core/", "materializer/", "server/", "stores/", "wire/")
_FRAME = re.compile(r"^(?P<name>.*) \((?P<where>[^()]*)\)$")
CATEGORIES = (
    "Ferry's Python",
    "native code Ferry calls",
    "grpc.aio (cygrpc)",
    "event loop and system calls",
    "other Python",
    "grpc poller and other threads",
)


def category(thread: str, frames: list[str]) -> str:
    """The category of one sampled stack (outermost frame first)."""
    if "MainThread" not in thread:
        return "grpc poller and other threads"
    places = [_place(frame) for frame in frames]
    innermost_python = next((p for p in reversed(places) if p.endswith(".py")), "")
    leaf = places[-1] if places else ""
    if innermost_python.startswith(OURS):
        return "Ferry's Python" if leaf == innermost_python else "native code Ferry calls"
    if "cygrpc" in leaf or innermost_python.startswith("grpc/"):
        return "grpc.aio (cygrpc)"
    if innermost_python.startswith(("asyncio/", "uvloop/")) or not leaf.endswith(".py"):
        return "event loop and system calls"
    return "other Python"


def _place(frame: str) -> str:
    """The file (or shared object) a py-spy frame ``name (file:line)`` is in."""
    found = _FRAME.match(frame)
    if found is None:
        return frame
    where = found["where"]
    return where.rsplit(":", 1)[0] if where.count(":") else where


def profile(
    target: str,
    pids: list[int],
    payloads: list[bytes],
    method: str,
    args: argparse.Namespace,
    work: Path,
) -> dict[str, Any]:
    """One closed-loop run with py-spy on the server's process; shares and µs per call."""
    settings = loadgen.Settings(
        seconds=args.seconds, warmup_s=0.5, processes=1, concurrency=args.concurrency
    )
    out = work / f"spy-{pids[0]}.txt"
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--native",
            "--threads",
            "--format",
            "raw",
            "--rate",
            str(args.rate),
            "--duration",
            str(int(args.seconds)),
            "--output",
            str(out),
            "--pid",
            str(pids[0]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    figures = loadgen.run(target, method, payloads, settings, None, pids)
    spy.wait(timeout=args.seconds + 60)
    counts: Counter[str] = Counter()
    frames_of: dict[str, Counter[str]] = {name: Counter() for name in CATEGORIES}
    for line in out.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        thread, *frames = stack.split(";")
        kind = category(thread, frames)
        counts[kind] += int(number)
        frames_of[kind][_where(frames)] += int(number)
    total = sum(counts.values()) or 1
    cpu = figures["server_cpu_us_per_call"] or 0.0
    return {
        "rps": round(figures["rps"]),
        "server_cpu_us_per_call": cpu,
        "samples": total,
        "categories": {
            name: {
                "share": round(counts[name] / total, 3),
                "us_per_call": round(counts[name] / total * cpu, 1),
            }
            for name in CATEGORIES
        },
        "top_frames": {
            name: {
                frame: round(n / total * cpu, 1)
                for frame, n in frames_of[name].most_common(args.top)
            }
            for name in CATEGORIES
        },
    }


def _where(frames: list[str]) -> str:
    """What a sample is spent in: its innermost frame, with the innermost frame of Ferry's
    that led there when that is not the same (which Ferry code calls the native code)."""
    if not frames:
        return "?"
    ours = next((f for f in reversed(frames) if _place(f).startswith(OURS)), None)
    leaf = frames[-1]
    return leaf if ours in (None, leaf) else f"{ours} -> {leaf}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=5, help="frames listed per category")
    args = parser.parse_args()
    if shutil.which(str(Path(sys.executable).parent / "py-spy")) is None:
        raise SystemExit("py-spy is not installed: bash scripts/setup.sh loadtest")
    work = Path(tempfile.mkdtemp(prefix="ferry-floor-"))
    try:
        with running_redis(work) as redis:
            serve_bench.load_data(work, redis.url, args.users)
            repo = workloads.load(str(serve_bench.REPO), str(work / "data"))
            case = workloads.Workload(batch=args.batch, skew="uniform", hit_ratio=0.9, seed=1)
            payloads = workloads.payloads(repo, case)
            ferry = [sys.executable, "-m", "ferry.cli.main", "serve", str(serve_bench.REPO)]
            ferry += ["--online-store", redis.url, "--port", "0"]
            server, target = serve_bench.start(ferry, work / "serve.log", 1)
            try:
                pids = loadgen.listening_pids(int(target.rsplit(":", 1)[1]))
                with loadgen.echo_server(1) as (echo_target, echo_pids):
                    report = {
                        "command": " ".join(["python", "loadtest/floor_profile.py", *sys.argv[1:]]),
                        "batch": args.batch,
                        "echo": profile(echo_target, echo_pids, payloads, case.method, args, work),
                        "ferry": profile(target, pids, payloads, case.method, args, work),
                    }
            finally:
                server.terminate()
                server.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    _print_table(report)


def _print_table(report: dict[str, Any]) -> None:
    echo, ferry = report["echo"], report["ferry"]
    ferry_cpu, echo_cpu = ferry["server_cpu_us_per_call"], echo["server_cpu_us_per_call"]
    print(f"\nbatch {report['batch']}: CPU per call, Ferry {ferry_cpu} µs, echo {echo_cpu} µs")
    print("| where | Ferry share | Ferry µs/call | echo share | echo µs/call |")
    print("|---|---:|---:|---:|---:|")
    for name in CATEGORIES:
        f, e = ferry["categories"][name], echo["categories"][name]
        cells = [f"{f['share']:.1%}", f["us_per_call"], f"{e['share']:.1%}", e["us_per_call"]]
        print(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()

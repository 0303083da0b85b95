"""Drive a load-test case with h2load (Debian's nghttp2-client), a C HTTP/2 client.

ghz is not installable on our machines, and a Python client spends several times more CPU
per call than the server under test; h2load spends ~4x less. It knows nothing of gRPC, so
this runner speaks gRPC for it: the request is framed (1-byte flag, 4-byte length, message)
and POSTed with ``content-type: application/grpc`` and ``te: trailers``.

h2load sends one body for every call (the first request of the workload), reports HTTP
statuses only (always 200 for gRPC) and does not print trailers. So the gRPC status is
checked two ways: a preflight call through grpcio must end OK, and after the run the DATA
bytes h2load received must equal (5 + response size) x calls: a gRPC error is a
trailers-only response with no DATA, so any failed call makes the total fall short.

The echo server (loadtest/echo_server.py) is run with the same h2load settings and figures
are printed as ratios to it. Server CPU per call comes from /proc for every process
listening on the target port.

    python loadtest/h2load_run.py samples/fraud/feature_repo.yaml --target 127.0.0.1:6570 \
        --batch 10 --calls 50000 --clients 4 --streams 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import grpc
import workload as workloads  # loadtest/workload.py
from loadgen import check_loopback, cpu_seconds, echo_server, listening_pids, ratios


def frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, big-endian length, bytes."""
    return struct.pack(">BI", 0, len(message)) + message


def preflight(target: str, method: str, payload: bytes) -> int:
    """Send the request once through grpcio; the response size, or exit on a non-OK status."""
    with grpc.insecure_channel(target) as channel:
        try:
            response = channel.unary_unary(method)(payload, timeout=10)
        except grpc.RpcError as err:
            raise SystemExit(
                f"preflight {method} failed: {err.code().name}: {err.details()}"  # type: ignore[attr-defined]
            ) from err
    return len(response)


def h2load(
    target: str, method: str, body: Path, args: argparse.Namespace, log: Path
) -> dict[str, Any]:
    """One h2load run; its summary lines and per-request times parsed."""
    command = [
        "h2load",
        f"--requests={args.calls}",
        f"--clients={args.clients}",
        f"--max-concurrent-streams={args.streams}",
        "--threads=1",
        f"--data={body}",
        f"--log-file={log}",
        "--header=content-type: application/grpc",
        "--header=te: trailers",
        f"http://{target}{method}",
    ]
    # Bounded in time as well as in count: past the limit h2load is stopped and the run fails.
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=args.max_seconds, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"h2load failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return parse(done.stdout, log)


def parse(output: str, log: Path) -> dict[str, Any]:
    """Figures from h2load's summary and its per-request log (start µs, status, elapsed µs)."""
    figures: dict[str, Any] = {}
    for line in output.splitlines():
        words = line.replace(",", "").split()
        if line.startswith("finished in"):
            figures["rps"] = float(words[3])
        elif line.startswith("requests:"):
            figures["done"] = int(words[5])
            figures["succeeded"] = int(words[7])
            figures["failed"] = int(words[9])
        elif line.startswith("traffic:"):
            # "traffic: 1.2MB (1234) total, 10KB (345) headers (...), 20KB (678) data"
            numbers = [int(w.strip("()")) for w in words if w.startswith("(") and w[1:2].isdigit()]
            figures["data_bytes"] = numbers[-1]
    elapsed = sorted(int(row.split()[2]) for row in log.read_text().splitlines() if row.strip())
    if elapsed:
        for name, q in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99), ("p999_ms", 0.999)):
            figures[name] = round(elapsed[min(len(elapsed) - 1, int(q * len(elapsed)))] / 1000, 3)
        figures["max_ms"] = round(elapsed[-1] / 1000, 3)
    return figures


def measure(
    target: str, method: str, payload: bytes, pids: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    """Preflight, then the h2load run; checks every call's response carried a message."""
    size = preflight(target, method, payload)
    with tempfile.TemporaryDirectory(prefix="ferry-h2load-") as work:
        body = Path(work) / "body.bin"
        body.write_bytes(frame(payload))
        before = cpu_seconds(pids) if pids else 0.0
        result = h2load(target, method, body, args, Path(work) / "requests.log")
        cpu = cpu_seconds(pids) - before if pids else None
    expected = (5 + size) * result["succeeded"]
    result["grpc_ok"] = result["data_bytes"] == expected and result["failed"] == 0
    result["response_bytes"] = size
    result["server_cpu_us_per_call"] = (
        None if cpu is None else round(cpu / max(result["done"], 1) * 1e6, 1)
    )
    if not result["grpc_ok"]:
        result["problem"] = (
            f"{result['data_bytes']} response bytes for {result['succeeded']} calls, expected "
            f"{expected}: some calls ended without a message (a gRPC error)"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", help="the feature repo file the server serves")
    parser.add_argument("--offline-root", help="override the repo's offline store root")
    parser.add_argument("--target", default="127.0.0.1:6570")
    parser.add_argument("--calls", type=int, default=20_000, help="requests per run")
    parser.add_argument("--clients", type=int, default=2, help="HTTP/2 connections")
    parser.add_argument("--streams", type=int, default=16, help="calls in flight per connection")
    parser.add_argument("--max-seconds", type=float, default=120, help="bound on each run")
    parser.add_argument("--no-echo", action="store_true", help="skip the echo baseline")
    workloads.add_arguments(parser)
    args = parser.parse_args()
    check_loopback(args.target)
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: apt-get install nghttp2-client")
    workload = workloads.from_arguments(args)
    payload = workloads.payloads(workloads.load(args.repo, args.offline_root), workload)[0]
    pids = listening_pids(int(args.target.rsplit(":", 1)[1]))
    report: dict[str, Any] = {"target": args.target, "method": workload.method, "batch": args.batch}
    report["ferry"] = measure(args.target, workload.method, payload, pids, args)
    if not args.no_echo:
        with echo_server(len(pids) or 1) as (echo_target, echo_pids):
            report["echo"] = measure(echo_target, workload.method, payload, echo_pids, args)
        report["ratio_to_echo"] = ratios(report["ferry"], report["echo"])
    print(json.dumps(report, indent=2))
    failed = [name for name in ("ferry", "echo") if name in report and not report[name]["grpc_ok"]]
    if failed:
        raise SystemExit(f"calls failed on: {', '.join(failed)}")


if __name__ == "__main__":
    main()

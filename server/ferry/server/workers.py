"""Several server processes on one port (SO_REUSEPORT): one Python process uses one core.

The kernel spreads *connections* across the processes, not calls: a client with one
channel stays on one process. The parent only supervises: it forwards SIGTERM, SIGINT and
SIGHUP to every worker and exits with the first non-zero worker status, else 0.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from ferry.core.errors import FerryError
from ferry.server.app import ServerBuilder, ServerConfig, host_port, run


def run_workers(build: ServerBuilder, config: ServerConfig, workers: int) -> int:
    """Run ``workers`` server processes, each built by ``build``; returns when all have
    exited."""
    if workers <= 1:
        return run(build, config)
    with _reserved_port(config.host, config.port) as port:
        return _supervise(build, dataclasses.replace(config, port=port, reuse_port=True), workers)


def _supervise(build: ServerBuilder, config: ServerConfig, workers: int) -> int:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker, args=(build, _worker_config(config, i)), name=f"ferry-worker-{i}"
        )
        for i in range(workers)
    ]

    def forward(signum: int, _frame: FrameType | None) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    # Handlers first: a signal arriving while workers start must not orphan them.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for process in processes:
        process.start()
    # A worker that fails (it could not bind, its store URL is bad) stops the others: half a
    # server that looks up is worse than none.
    running = list(processes)
    while running:
        multiprocessing.connection.wait([p.sentinel for p in running])
        for process in [p for p in running if not p.is_alive()]:
            running.remove(process)
            if process.exitcode:
                forward(signal.SIGTERM, None)
    failed = [p.exitcode for p in processes if p.exitcode]
    # A worker's own error code, not the SIGTERM that stopped the others.
    return next((code for code in failed if code > 0), 1) if failed else 0


def _worker_config(config: ServerConfig, index: int) -> ServerConfig:
    """Worker ``index``'s config: its own metrics port, P + index (each process exports its
    own metrics; Prometheus scrapes N targets)."""
    if config.metrics_port:
        return dataclasses.replace(config, metrics_port=config.metrics_port + index)
    return config


def _worker(build: ServerBuilder, config: ServerConfig) -> None:
    """One worker process: its errors are one line on stderr and exit code 1, as the CLI's."""
    try:
        code = run(build, config)
    except FerryError as err:
        print(f"ferry serve: error: {err}", file=sys.stderr)
        code = 1
    sys.exit(code)


@contextmanager
def _reserved_port(host: str, port: int) -> Iterator[int]:
    """The port the workers share, held by a bound (not listening) SO_REUSEPORT socket for
    as long as they run: another process cannot take a free port between its choice and the
    workers' binds, and a bound socket receives no connections."""
    host = host.strip("[]")  # --host [::1] as well as ::1
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            holder.bind((host, port))
        except OSError as err:
            raise FerryError(f"cannot listen on {host_port(host, port)}: {err.strerror}") from err
        yield int(holder.getsockname()[1])

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
from types import FrameType

from ferry.server.app import ServerConfig, run


def run_workers(config: ServerConfig, workers: int) -> int:
    """Run ``workers`` server processes; returns when all have exited."""
    if workers <= 1:
        return run(config)
    if config.port == 0:
        config = dataclasses.replace(config, port=_free_port(config.host))
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=run, args=(config,), name=f"ferry-worker-{i}")
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
    return next((p.exitcode for p in processes if p.exitcode), 0)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])

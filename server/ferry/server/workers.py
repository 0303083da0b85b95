"""Several server processes on one port (SO_REUSEPORT): one Python process uses one core.

The kernel spreads *connections* across the processes, not calls: a client with one
channel stays on one process. The parent only supervises: it forwards SIGTERM, SIGINT and
SIGHUP to every worker and exits with the first non-zero worker status, else 0.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
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
    codes = []
    for process in processes:
        process.join()
        codes.append(process.exitcode or 0)
    return next((c for c in codes if c != 0), 0)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])

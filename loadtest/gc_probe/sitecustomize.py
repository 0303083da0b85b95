"""Loaded by a server tail_bench.py starts (this folder first on its PYTHONPATH): records
each garbage collection of generation 1 and 2, when (``time.monotonic``, one clock for
every process) and how long, and writes them as JSON
to ``$FERRY_GC_PROBE_OUT.<pid>`` when the process exits. Measurement only; never shipped."""

import atexit
import gc
import json
import os
import time

_OUT = os.environ.get("FERRY_GC_PROBE_OUT")
_started: dict[int, float] = {}
_collections: list[dict[str, float]] = []


def _observe(phase: str, info: dict[str, int]) -> None:
    generation = info["generation"]
    if phase == "start":
        _started[generation] = time.perf_counter()
    elif generation >= 1 and generation in _started:
        _collections.append(
            {
                "at": time.monotonic(),  # CLOCK_MONOTONIC: one clock for every process
                "generation": generation,
                "ms": round((time.perf_counter() - _started[generation]) * 1000, 3),
            }
        )


def _write() -> None:
    with open(f"{_OUT}.{os.getpid()}", "w") as out:
        json.dump(_collections, out)


if _OUT:
    gc.callbacks.append(_observe)
    atexit.register(_write)

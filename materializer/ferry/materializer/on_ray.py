"""The shards of one materialization as tasks on a Ray cluster.

Ray runs the work; Ferry keeps the rules. Each task is ``--shard I/N`` in a Ray worker:
it opens the store, materializes its shard of every plan and raises its shard watermark,
and the last shard to finish raises the view's (``ferry.materializer.shards``), so a task
retried, or run twice, converges on what one run stores. The driver plans once (one window,
from one reading of the watermarks) and hands the same plans to every task, so shards never
disagree on the window.

Retries are the driver's, not Ray's (tasks are submitted with ``max_retries=0``): a failed
or crashed task is submitted again up to ``retries`` times, each attempt reported, and when
they run out the run fails with that shard's own error. Ray is imported only here, and only
when this path runs (the ``ray`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import resource
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ferry.core.errors import FerryError, MaterializationError
from ferry.core.repo import FeatureRepo
from ferry.materializer.job import JobConfig, ViewReport, materialize
from ferry.materializer.plan import ViewPlan
from ferry.materializer.shards import Shard
from ferry.stores.urls import open_online_store


@dataclass(frozen=True)
class ShardedJob:
    """Everything a task needs: the repo, the store's URL (opened in the worker: a
    connection cannot travel), the plans every shard shares, and the batch size."""

    repo: FeatureRepo
    store_url: str
    plans: list[ViewPlan]
    batch_rows: int
    max_held_rows: int = JobConfig.max_held_rows


@dataclass(frozen=True)
class ShardOutcome:
    """What one shard's task did, where and at what cost.

    Attributes:
        reports: Per view, as a single run reports them (rows of this shard only).
        seconds: Wall time of the task inside the worker.
        peak_rss_bytes: The worker process's peak resident memory so far (Ray reuses
            workers, so this is an upper bound for the task).
        bytes_read: Bytes the worker read during the task (Linux ``rchar``: every read
            system call, from the page cache or not); None where unknown.
        node: The host that ran it.
        attempts: Tasks submitted for this shard, the successful one included.
    """

    shard: Shard
    reports: list[ViewReport]
    seconds: float
    peak_rss_bytes: int
    bytes_read: int | None
    node: str
    attempts: int = 1


def run_shard(job: ShardedJob, shard: Shard) -> ShardOutcome:
    """One shard, in the calling process (a Ray worker)."""
    read_before = _bytes_read()
    started = time.perf_counter()
    reports = asyncio.run(_materialize(job, shard))
    read_after = _bytes_read()
    return ShardOutcome(
        shard=shard,
        reports=reports,
        seconds=time.perf_counter() - started,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        bytes_read=None if read_before is None or read_after is None else read_after - read_before,
        node=socket.gethostname(),
    )


async def _materialize(job: ShardedJob, shard: Shard) -> list[ViewReport]:
    store = open_online_store(job.store_url)
    try:
        config = JobConfig(batch_rows=job.batch_rows, max_held_rows=job.max_held_rows, shard=shard)
        return await materialize(job.repo, store, job.plans, config)
    finally:
        await store.close()


def _bytes_read() -> int | None:
    try:
        with open("/proc/self/io") as io:
            for line in io:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_on_ray(
    job: ShardedJob,
    shards: int,
    address: str | None,
    retries: int,
    say: Callable[[str], None],
) -> list[ShardOutcome]:
    """Run shards 0..N-1 of ``job`` as Ray tasks; their outcomes, in shard order.

    ``address`` is a running cluster's (``HOST:PORT`` of its head, or ``ray://HOST:PORT``
    for Ray Client); None finds one as Ray does (``RAY_ADDRESS``, then the cluster
    ``ray start`` last started on this machine) or starts a local one for the run.

    Raises:
        MaterializationError: Ray is not installed or the cluster cannot be reached; or a
            shard failed on every attempt (with its error).
    """
    ray = _import_ray()
    if address is not None:
        _check_reachable(address)
    # Ray prints what it hears from the cluster (a worker died, ...) on stdout, where the
    # CLI's JSON lines go: keep it on stderr, beside the progress lines.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as err:
            message = f"cannot join the Ray cluster at {address or 'the default address'}: {err}"
            raise MaterializationError(message) from err
        try:
            return _run_tasks(ray, job, shards, retries, say)
        finally:
            ray.shutdown()


def _run_tasks(
    ray: Any, job: ShardedJob, shards: int, retries: int, say: Callable[[str], None]
) -> list[ShardOutcome]:
    task = ray.remote(max_retries=0, num_cpus=1)(run_shard)
    shared = ray.put(job)  # one copy in the object store, not one per task
    attempts = dict.fromkeys(range(shards), 1)
    running = {task.remote(shared, Shard(i, shards)): i for i in range(shards)}
    done: dict[int, ShardOutcome] = {}
    started = time.monotonic()
    while running:
        (ready,), _ = ray.wait(list(running), num_returns=1)
        index = running.pop(ready)
        try:
            outcome: ShardOutcome = ray.get(ready)
        except ray.exceptions.RayError as err:
            reason = _reason(err)
            if attempts[index] > retries:
                for pending in running:
                    with contextlib.suppress(Exception):
                        ray.cancel(pending, force=True)
                raise MaterializationError(
                    f"shard {index}/{shards} failed on all {attempts[index]} attempts; "
                    f"the last: {reason}"
                ) from None
            say(f"shard {index}/{shards} failed (attempt {attempts[index]}): {reason}; retrying")
            attempts[index] += 1
            running[task.remote(shared, Shard(index, shards))] = index
            continue
        done[index] = dataclasses.replace(outcome, attempts=attempts[index])
        rows = sum(r.rows_written for r in outcome.reports)
        say(
            f"shard {index}/{shards} done in {outcome.seconds:.1f} s on {outcome.node}: "
            f"{rows} rows written ({len(done)} of {shards} shards, "
            f"{time.monotonic() - started:.1f} s)"
        )
    return [done[i] for i in range(shards)]


def _reason(err: Exception) -> str:
    """A failed task's own error (a FerryError's message as the CLI would print it), or
    what Ray says happened to the worker (crashed, killed, its node lost)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return str(cause) if isinstance(cause, FerryError) else f"{type(cause).__name__}: {cause}"
    first = str(err).strip().splitlines()
    return f"{type(err).__name__}: {first[0] if first else 'no detail'}"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise MaterializationError("--ray needs Ray: pip install 'ferry-features[ray]'") from err
    return ray


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds, naming the address, where ray.init would wait a minute."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout_s):
            pass
    except ValueError as err:
        raise MaterializationError(
            f"--ray {address!r}: expected HOST:PORT or ray://HOST:PORT"
        ) from err
    except OSError as err:
        raise MaterializationError(
            f"the Ray cluster at {address} cannot be reached: {err}"
        ) from err

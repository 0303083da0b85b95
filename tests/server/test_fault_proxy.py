"""Store faults through a TCP proxy in front of a real redis-server, under a bounded load:
per phase, the codes calls get (never INTERNAL), no call past its deadline plus a small
slack, health NOT_SERVING during a fault and SERVING again within a probe interval (plus
the probe's own timeout) after it, and a clean drain at the end."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from ferry.client import AsyncFerryClient, RetryPolicy, RpcError
from ferry.core import FeatureRepo
from ferry.server import FerryServer, Limits
from tests.faultproxy import FaultProxy, Mode
from tests.server.conftest import load_store, start_server
from tests.server.test_faults import ENTITIES, wait_for_health
from tests.services import RedisServer

DEADLINE_S = 0.3
SLACK_S = 0.25
HEALTH_INTERVAL_S = 0.5
PHASE_S = 1.0
CALLERS = 4
OK = "OK"
TRANSIENT = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


@contextlib.asynccontextmanager
async def behind_a_proxy(
    redis_server: RedisServer, redis_url: str, repo: FeatureRepo, **settings: Any
) -> AsyncIterator[tuple[FaultProxy, FerryServer]]:
    """The served data in Redis, a fault proxy in front of it, and a server through it."""
    await load_store(repo, redis_url)
    proxy = FaultProxy(redis_server.port)
    await proxy.start()
    try:
        server = await start_server(
            f"redis://127.0.0.1:{proxy.port}/0",
            health_interval_s=HEALTH_INTERVAL_S,
            limits=Limits(store_timeout_s=DEADLINE_S),
            **settings,
        )
        try:
            yield proxy, server
        finally:
            await server.stop(0)
    finally:
        await proxy.stop()


@pytest.fixture
async def proxied(
    redis_server: RedisServer, redis_url: str, served_repo: FeatureRepo
) -> AsyncIterator[tuple[FaultProxy, FerryServer]]:
    async with behind_a_proxy(redis_server, redis_url, served_repo) as parts:
        yield parts


async def load(port: int, seconds: float) -> list[tuple[str, float]]:
    """``CALLERS`` loops of calls for ``seconds``: (code, seconds taken) per call."""
    return [(code, took) for code, took, _ in await timed_load(port, seconds)]


async def timed_load(port: int, seconds: float) -> list[tuple[str, float, float]]:
    """``load``, with when each call started (``time.monotonic``)."""
    results: list[tuple[str, float, float]] = []

    async def caller(client: AsyncFerryClient) -> None:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                await client.get_online_features(
                    entities=ENTITIES, features=["user_stats:*"], timeout_s=DEADLINE_S
                )
                code = OK
            except RpcError as err:
                code = err.code.name
            results.append((code, time.monotonic() - started, started))
            await asyncio.sleep(0.005)

    async with AsyncFerryClient(f"127.0.0.1:{port}", retry=RetryPolicy(attempts=1)) as client:
        await asyncio.gather(*(caller(client) for _ in range(CALLERS)))
    return results


@pytest.mark.parametrize(
    ("mode", "latency_s", "allowed", "fails_fast"),
    [
        ("latency", 0.02, {OK}, False),
        ("latency", 0.6, TRANSIENT, False),
        ("blackhole", None, TRANSIENT, False),
        ("reset", None, TRANSIENT, True),
        ("refuse", None, TRANSIENT, True),
        ("accept_close", None, TRANSIENT, True),
    ],
)
async def test_a_store_fault_and_the_recovery(
    proxied: tuple[FaultProxy, FerryServer],
    mode: Mode,
    latency_s: float | None,
    allowed: set[str],
    fails_fast: bool,
) -> None:
    proxy, server = proxied
    before = await load(server.port, PHASE_S / 2)
    assert {code for code, _ in before} == {OK}

    await proxy.set_mode(mode, latency_s)
    during = await load(server.port, PHASE_S)
    codes = {code for code, _ in during}
    assert codes <= allowed, codes
    assert "INTERNAL" not in codes
    if fails_fast:
        # A store that refuses or drops connections is said UNAVAILABLE at once, not at the
        # deadline. On a starved CI machine a call now and then still meets its 0.3 s
        # deadline first (seen once in 874 tests), so the share and the median are what
        # is asserted: a store path that waited for the deadline would fail both.
        unavailable = sum(code == "UNAVAILABLE" for code, _ in during)
        assert unavailable >= 0.9 * len(during), (unavailable, len(during))
        assert statistics.median(took for _, took in during) < DEADLINE_S / 3
    assert max(took for _, took in during) < DEADLINE_S + SLACK_S
    if allowed != {OK}:
        await wait_for_health(server.port, health_pb2.HealthCheckResponse.NOT_SERVING, 2)

    await proxy.set_mode("pass")
    took = await wait_for_health(server.port, health_pb2.HealthCheckResponse.SERVING, 3)
    # One probe period while NOT_SERVING (interval + 0.1 s) plus the probe's own timeout.
    assert took < HEALTH_INTERVAL_S + 0.1 + max(HEALTH_INTERVAL_S, 0.2) + SLACK_S
    after = await load(server.port, PHASE_S / 2)
    assert {code for code, _ in after} == {OK}


async def test_the_server_drains_after_faults(proxied: tuple[FaultProxy, FerryServer]) -> None:
    proxy, server = proxied
    for mode in ("reset", "accept_close", "blackhole"):
        await proxy.set_mode(mode)  # type: ignore[arg-type]
        await load(server.port, 0.3)
    await proxy.set_mode("pass")
    await wait_for_health(server.port, health_pb2.HealthCheckResponse.SERVING, 3)
    calls = asyncio.create_task(timed_load(server.port, 0.5))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await server.stop(2)
    assert time.monotonic() - started < 3
    results = await calls
    # Calls well before the drain were answered; from about its start on, calls are refused
    # by gRPC (UNAVAILABLE or CANCELLED, its codes for a server shutting down, even for a
    # call sent a moment before), never INTERNAL. (test_process checks that calls in flight
    # at SIGTERM all finish.)
    assert {code for code, _, began in results if began < started - 0.05} == {OK}
    assert {code for code, _, began in results if began >= started} <= {
        OK,
        "UNAVAILABLE",
        "CANCELLED",
    }
    with pytest.raises(grpc.aio.AioRpcError):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=0.5)


async def test_health_logs_each_new_cause_of_an_outage_once(
    proxied: tuple[FaultProxy, FerryServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A first probe that timed out used to be the only line of an outage, whatever came
    after (a DynamoDB table found missing said "ping timed out" for good); one line per
    probe would flood the log instead."""
    proxy, server = proxied
    caplog.set_level("INFO", logger="ferry.server")
    await proxy.set_mode("blackhole")
    await wait_for_health(server.port, health_pb2.HealthCheckResponse.NOT_SERVING, 3)
    await asyncio.sleep(4 * HEALTH_INTERVAL_S)
    await proxy.set_mode("refuse")
    await asyncio.sleep(4 * HEALTH_INTERVAL_S)
    await proxy.set_mode("pass")
    await wait_for_health(server.port, health_pb2.HealthCheckResponse.SERVING, 3)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("health: ")]
    down = [line for line in lines if line.startswith("health: NOT_SERVING")]
    assert "health: NOT_SERVING (ping timed out)" in down, lines
    # And refused: one line of that cause (reset or refused: both STORE_UNAVAILABLE).
    assert any(line.startswith("health: NOT_SERVING (redis at 127.0.0.1:") for line in down)
    assert len(down) <= 3, lines  # perhaps "a request failed" too
    assert lines[-1] == "health: SERVING (the online store answers)"


async def test_an_outage_logs_a_bounded_number_of_lines_and_counts_the_rest(
    redis_server: RedisServer,
    redis_url: str,
    served_repo: FeatureRepo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every call fails while the store refuses connections; the access log has at most
    ``access_log_failures_per_s`` lines a second of them, and held-back lines that count
    the rest, so that lines plus held back are exactly the failures callers saw."""
    settings = {"access_log_failures_per_s": 20}
    async with behind_a_proxy(redis_server, redis_url, served_repo, **settings) as parts:
        proxy, server = parts
        caplog.set_level("INFO", logger="ferry.access")
        await proxy.set_mode("refuse")
        during = await load(server.port, 1.5)
        await asyncio.sleep(1.2)  # the last window's count comes at its end
    failed = sum(code == "UNAVAILABLE" for code, _ in during)
    records = [r for r in caplog.records if r.name == "ferry.access"]
    lines = [r for r in records if "held_back" not in r.fields]  # type: ignore[attr-defined]
    held = [r.fields["held_back"] for r in records if "held_back" in r.fields]  # type: ignore[attr-defined]
    assert {r.fields["code"] for r in records} == {"UNAVAILABLE"}  # type: ignore[attr-defined]
    assert len(lines) <= 20 * 3  # three windows at most: 1.5 s of load
    assert len(lines) + sum(held) == failed
    assert failed > 3 * 20, "too few calls to need holding back: the machine is starved"

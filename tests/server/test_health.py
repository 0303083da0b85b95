"""The health probe's own rules, against a store whose ping raises what no store should
(the real faults, through a TCP proxy in front of redis-server, are test_fault_proxy's)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from ferry.server.health import StoreHealth


class _PingRaises:
    """Stands in for an online store: only ``ping`` is called by the probe."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        if self.pings <= self.failures:
            raise RuntimeError("handler is closed")


async def _status(servicer: health_aio.HealthServicer) -> Any:
    request = health_pb2.HealthCheckRequest(service="")
    return (await servicer.Check(request, None)).status


async def test_an_unexpected_error_is_one_traceback_per_outage_and_the_probe_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="ferry.server")
    servicer = health_aio.HealthServicer()
    store = _PingRaises(failures=5)
    health = StoreHealth(servicer, store, [], interval_s=0.05)  # type: ignore[arg-type]
    await health.start()
    try:
        for _ in range(100):
            if store.pings > store.failures and health.serving:
                break
            await asyncio.sleep(0.02)
        assert health.serving, store.pings
        assert await _status(servicer) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await health.drain()
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in caplog.records]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines.count("health: NOT_SERVING (unexpected RuntimeError: handler is closed)") == 1

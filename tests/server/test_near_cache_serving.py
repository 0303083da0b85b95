"""A server with a near cache answers as its store does: after a materialization by another
process, a push, or a raw SET by another Redis client, the cached server's answers equal
those of a server without a cache on the same store, within one invalidation's delivery
(on Redis) or the cache's time bound (elsewhere)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ferry.client import AsyncFerryClient
from ferry.core import FeatureRepo, encode_key
from ferry.server import FerryServer
from ferry.stores import CacheLimits, ViewTable
from ferry.stores.resp import RespConnection
from tests.e2e.fraud import DAY, SAMPLE_REPO
from tests.e2e.test_materialize import materialize
from tests.server.conftest import END, load_store, start_server
from tests.server.test_metrics import scrape, value

USERS = list(range(1, 301))
ENTITIES = {"user_id": USERS, "merchant_id": [f"m{(u % 200) + 1:07d}" for u in USERS]}


async def answer(client: AsyncFerryClient) -> dict[str, list[Any]]:
    features = await client.get_online_features(entities=ENTITIES, feature_service="fraud_v1")
    return features.to_dict(include_status=True, include_event_timestamps=True)


async def converge(cached: AsyncFerryClient, plain: AsyncFerryClient, bound_s: float) -> float:
    """Seconds until the cached server answers as the plain one; fails past ``bound_s``."""
    started = time.monotonic()
    while True:
        truth = await answer(plain)
        if await answer(cached) == truth:
            return time.monotonic() - started
        assert time.monotonic() - started < bound_s, "the cached server kept an old value"
        await asyncio.sleep(0.005)


@asynccontextmanager
async def cached_and_plain(
    url: str, cache: CacheLimits
) -> AsyncIterator[tuple[FerryServer, AsyncFerryClient, AsyncFerryClient]]:
    """Two servers over the store at ``url``, alike but for ``cache``: the cached one and a
    client of each."""
    cached_server = await start_server(url, cache=cache, metrics_port=0)
    plain_server = await start_server(url)
    try:
        async with (
            AsyncFerryClient(f"127.0.0.1:{cached_server.port}", timeout_s=10) as cached,
            AsyncFerryClient(f"127.0.0.1:{plain_server.port}", timeout_s=10) as plain,
        ):
            yield cached_server, cached, plain
    finally:
        await cached_server.stop(0)
        await plain_server.stop(0)


async def test_on_redis_every_writer_is_seen_at_once(
    redis_url: str, served_repo: FeatureRepo, served_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ferry.server")
    await load_store(served_repo, redis_url, END - DAY)  # the rows of a day before
    raw = RespConnection(redis_url, 5, 2)
    try:
        async with cached_and_plain(redis_url, CacheLimits()) as (server, cached, plain):
            old = await answer(plain)
            assert await answer(cached) == old
            assert await answer(cached) == old  # now from memory
            assert "near cache: up to 100000 rows and 64 MiB, kept exact" in caplog.text
            hits = value(
                await asyncio.to_thread(scrape, server.metrics_port),
                "ferry_near_cache_lookups_total",
                result="hit",
            )
            assert hits >= 100  # rows past their view's TTL are read from Redis every time

            end = datetime.fromtimestamp(END / 1e6, UTC).isoformat()
            window = ["--start", "1970-01-01T00:00:00Z", "--end", end]
            lines = await asyncio.to_thread(
                materialize, served_data, redis_url, "materialize", *window
            )  # in a process of its own
            assert lines[-1]["rows_written"] > 0
            assert await answer(plain) != old  # the materialization changed what is served
            took = {"materialize": await converge(cached, plain, 1.0)}

            pushed = {"user_id": 1, "event_timestamp": datetime.now(UTC), "txn_count_7d": 123456}
            await cached.push("user_stats", [pushed], missing_features_are_null=True)
            served = await answer(cached)  # its own write: invalidated here on the ack
            assert served["user_stats:txn_count_7d"][0] == 123456
            assert served == await answer(plain)

            table = ViewTable(served_repo.project, "user_stats")
            copied = await raw.execute(b"GET", table.key_prefix + encode_key([3]))
            await raw.execute(b"SET", table.key_prefix + encode_key([2]), copied)
            took["raw SET"] = await converge(cached, plain, 1.0)
            served = await answer(cached)
            assert served["user_stats:txn_count_7d"][1] == served["user_stats:txn_count_7d"][2]
            samples = await asyncio.to_thread(scrape, server.metrics_port)
        assert value(samples, "ferry_near_cache_invalidations_total") >= len(USERS)
        assert value(samples, "ferry_near_cache_entries") > 0
        print(f"seen after: {took}")
    finally:
        await raw.close()


async def test_elsewhere_a_cache_is_bounded_in_time(
    sqlite_url: str, served_repo: FeatureRepo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ferry.server")
    await load_store(served_repo, sqlite_url, END - DAY)
    async with cached_and_plain(sqlite_url, CacheLimits(ttl_ms=300)) as (_, cached, plain):
        old = await answer(plain)
        assert await answer(cached) == old
        await load_store(served_repo, sqlite_url, END)  # another store object: no invalidation
        assert await answer(plain) != old
        took = await converge(cached, plain, 0.3 + 1.0)
        assert "each row served at most 300 ms after it was read" in caplog.text
        pushed = {"user_id": 1, "event_timestamp": datetime.now(UTC), "txn_count_7d": 7}
        await cached.push("user_stats", [pushed], missing_features_are_null=True)
        assert (await answer(cached))["user_stats:txn_count_7d"][0] == 7  # its own write
    print(f"seen after {took:.3f} s")


def test_a_store_without_invalidations_needs_a_time_bound(sqlite_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "serve",
            str(SAMPLE_REPO),
            "--online-store",
            sqlite_url,
            "--port",
            "0",
            "--cache-entries",
            "1000",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "the sqlite store sends no invalidations" in done.stderr
    assert "--cache-ttl-ms" in done.stderr
    assert "Traceback" not in done.stderr

"""The near cache on a real Redis: exact through client-side caching invalidations.

"Within one invalidation round trip": once a write is acknowledged, one command answered on
the cached store's read connection (``ping``) has also brought the write's invalidation,
since Redis queues it there before that reply. Other writers here are separate stores and
connections, as another process would be.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from ferry.core import Feature, RowCodec, ValueType, encode_key
from ferry.core.codec import event_timestamp_of
from ferry.core.errors import StoreUnavailableError
from ferry.stores import ReadRequest, ViewTable, open_online_store
from ferry.stores.cached import CachedOnlineStore
from ferry.stores.near_cache import CacheLimits, NearCache
from ferry.stores.redis import RedisConfig, RedisOnlineStore
from ferry.stores.resp import RespConnection
from tests.services import RedisServer

CODEC = RowCodec([Feature("n", ValueType.INT64)])
VIEW = ViewTable("proj", "view")


def row(event: int) -> bytes:
    return CODEC.encode(event, 0, [event])


@pytest.fixture
async def cached(redis_url: str) -> AsyncIterator[CachedOnlineStore]:
    store = CachedOnlineStore(open_online_store(redis_url), NearCache(CacheLimits()))
    yield store
    await store.close()


@pytest.fixture
async def other(redis_url: str) -> AsyncIterator[RedisOnlineStore]:
    """Another writer: its own connections, no cache."""
    store = RedisOnlineStore(RedisConfig(redis_url))
    yield store
    await store.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[RespConnection]:
    connection = RespConnection(redis_url, 5, 2)
    yield connection
    await connection.close()


async def events(store: CachedOnlineStore, keys: list[bytes]) -> list[int | None]:
    (rows,) = await store.read([ReadRequest(VIEW, keys)])
    return [None if r is None else event_timestamp_of(r) for r in rows]


async def test_hot_keys_are_answered_from_memory(
    cached: CachedOnlineStore, raw: RespConnection
) -> None:
    keys = [encode_key([i]) for i in range(3)]
    await cached.write(VIEW, [(k, row(10)) for k in keys[:2]])
    assert await events(cached, keys) == [10, 10, None]
    before = await mget_calls(raw)
    for _ in range(5):
        assert await events(cached, keys) == [10, 10, None]
    assert await mget_calls(raw) == before  # no read reached Redis
    assert cached.cache.counts.hits == 15


async def mget_calls(raw: RespConnection) -> int:
    info = (await raw.execute(b"INFO", b"commandstats")).decode()
    return int(info.split("cmdstat_mget:calls=")[1].split(",")[0])


async def test_writes_elsewhere_are_seen_within_one_round_trip(
    cached: CachedOnlineStore, other: RedisOnlineStore, raw: RespConnection
) -> None:
    stored, absent, deleted = encode_key([1]), encode_key([2]), encode_key([3])
    await other.write(VIEW, [(stored, row(10)), (deleted, row(10))])
    assert await events(cached, [stored, absent, deleted]) == [10, None, 10]
    await other.write(VIEW, [(stored, row(20))])  # the conditional script, as materialize
    await raw.execute(b"SET", VIEW.key_prefix + absent, row(30))  # a raw SET
    await raw.execute(b"UNLINK", VIEW.key_prefix + deleted)
    await cached.ping()
    assert await events(cached, [stored, absent, deleted]) == [20, 30, None]
    await raw.execute(b"FLUSHALL")
    await cached.ping()
    assert await events(cached, [stored, absent, deleted]) == [None, None, None]
    assert cached.cache.counts.flushes >= 1


async def test_a_lost_tracking_connection_flushes_the_cache(
    cached: CachedOnlineStore, raw: RespConnection, redis_server: RedisServer
) -> None:
    key = encode_key([1])
    await cached.write(VIEW, [(key, row(10))])
    assert await events(cached, [key]) == [10]
    assert await events(cached, [key]) == [10]  # from memory
    await raw.execute(b"CLIENT", b"KILL", b"ID", tracking_client_id(redis_server))
    # Written while nobody tracks the key for this process: no invalidation will come.
    await raw.execute(b"SET", VIEW.key_prefix + key, row(20))
    await asyncio.sleep(0.2)  # the closed connection reaches this process
    assert len(cached.cache) == 0
    assert await events(cached, [key]) == [20]
    # The new connection tracks again.
    await raw.execute(b"SET", VIEW.key_prefix + key, row(30))
    await cached.ping()
    assert await events(cached, [key]) == [30]


def tracking_client_id(redis: RedisServer) -> str:
    """The ID of the one client with client-side caching on (``flags`` has ``t``)."""
    ids = [
        line.split("id=")[1].split()[0]
        for line in redis.cli("CLIENT", "LIST").splitlines()
        if "t" in line.split("flags=")[1].split()[0]
    ]
    assert len(ids) == 1, ids
    return ids[0]


async def test_redis_that_refuses_tracking_is_named(redis_server: RedisServer) -> None:
    redis_server.cli("ACL", "SETUSER", "notrack", "on", ">pw", "~*", "+@all", "-client")
    try:
        url = f"redis://notrack:pw@127.0.0.1:{redis_server.port}/0"
        store = CachedOnlineStore(open_online_store(url), NearCache(CacheLimits()))
        with pytest.raises(StoreUnavailableError, match="refused client-side caching") as caught:
            await store.read([ReadRequest(VIEW, [encode_key([1])])])
        assert caught.value.reason == "STORE_TRACKING_REFUSED"
        await store.close()
    finally:
        redis_server.cli("ACL", "DELUSER", "notrack")


@pytest.mark.parametrize("kill_tracking", [False, True], ids=["steady", "tracking-killed"])
async def test_no_read_is_older_than_the_last_acknowledged_write(
    redis_url: str, redis_server: RedisServer, kill_tracking: bool
) -> None:
    """Writers (conditional writes from their own stores, and raw SETs) and readers run at
    once for a few seconds; each read must return at least what had been acknowledged, and
    seen within one round trip, before it began. With ``kill_tracking``, the cached store's
    connection is killed now and then under the load."""
    rng = random.Random(14)
    cached = CachedOnlineStore(open_online_store(redis_url), NearCache(CacheLimits()))
    writers = [RedisOnlineStore(RedisConfig(redis_url)) for _ in range(3)]
    raw, killer = RespConnection(redis_url, 5, 2), RespConnection(redis_url, 5, 2)
    conditional = [encode_key([i]) for i in range(12)]
    raw_keys = [encode_key([100 + i]) for i in range(4)]  # one raw writer each: in order
    floor = dict.fromkeys(conditional + raw_keys, 0)
    next_event = dict.fromkeys(floor, 1)
    stop_at = time.monotonic() + 3.0
    checked = unavailable = 0

    async def acknowledge(key: bytes, event: int) -> None:
        while True:  # one round trip on the read connection (it may be being replaced)
            try:
                await cached.ping()
                break
            except StoreUnavailableError:
                await asyncio.sleep(0.01)
        floor[key] = max(floor[key], event)

    async def write_conditional(writer: RedisOnlineStore) -> None:
        while time.monotonic() < stop_at:
            key = rng.choice(conditional)
            event = next_event[key]
            next_event[key] += 1
            await writer.write(VIEW, [(key, row(event))])
            await acknowledge(key, event)
            await asyncio.sleep(rng.random() * 0.004)

    async def write_raw(key: bytes) -> None:
        while time.monotonic() < stop_at:
            event = next_event[key]
            next_event[key] += 1
            await raw.execute(b"SET", VIEW.key_prefix + key, row(event))
            await acknowledge(key, event)
            await asyncio.sleep(rng.random() * 0.01)

    async def read() -> None:
        nonlocal checked, unavailable
        while time.monotonic() < stop_at:
            keys = rng.sample(list(floor), rng.randint(1, 6))
            floors = [floor[k] for k in keys]
            try:
                found = await events(cached, keys)
            except StoreUnavailableError:
                unavailable += 1
                await asyncio.sleep(0.005)
                continue
            for key, least, event in zip(keys, floors, found, strict=True):
                assert (event or 0) >= least, f"key {key!r}: read {event} after {least} was acked"
            checked += len(keys)
            await asyncio.sleep(0)

    async def kill() -> None:
        while time.monotonic() < stop_at - 0.5:
            await asyncio.sleep(0.4)
            ids = await asyncio.to_thread(tracking_client_id, redis_server)
            await killer.execute(b"CLIENT", b"KILL", b"ID", ids)

    try:
        tasks = [write_conditional(w) for w in writers] + [write_raw(k) for k in raw_keys]
        tasks += [read() for _ in range(4)]
        if kill_tracking:
            tasks.append(kill())
        await asyncio.gather(*tasks)
    finally:
        await cached.close()
        for store in writers:
            await store.close()
        await raw.close()
        await killer.close()
    counts = cached.cache.counts
    assert checked > 2_000, checked
    assert counts.hits > 1_000, counts
    assert counts.invalidations > 200, counts
    if kill_tracking:  # a flush per kill
        assert counts.flushes >= 4, (counts, unavailable)

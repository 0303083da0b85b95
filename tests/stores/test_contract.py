"""One contract suite, run unchanged against every online store backend."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ferry.core import Feature, RowCodec, ValueType, encode_key
from ferry.core.errors import StoreError, StoreUnavailableError, UnknownSchemaError
from ferry.core.timestamps import now_micros
from ferry.stores import (
    DynamoOnlineStore,
    OnlineStore,
    ReadRequest,
    ViewTable,
    WriteResult,
    is_newer,
    open_online_store,
)
from ferry.stores.cached import CachedOnlineStore
from ferry.stores.legacy_keys import LegacyKeysStore
from ferry.stores.near_cache import CacheLimits, NearCache
from ferry.stores.schemas import learn_schemas, record_schema, unknown_schemas
from tests.services import free_port

# rediss: TLS and an ACL user; cluster: 3 primaries, 3 replicas; rediss_cluster: TLS, ACL user;
# cached_*: behind a near cache (Redis, Cluster: kept exact by invalidations; SQLite: by time)
# legacy_*: read under both key layouts (ferry.stores.legacy_keys)
BACKENDS = [
    "sqlite",
    "redis",
    "rediss",
    "cluster",
    "rediss_cluster",
    "dynamodb",
    "cached_redis",
    "cached_rediss",
    "cached_cluster",
    "cached_sqlite",
    "legacy_redis",
    "legacy_sqlite",
]
FEATURES = [Feature(f"f_{t.name.lower()}", t) for t in ValueType]
CODEC = RowCodec(FEATURES)
VALUES: list[Any] = [
    -(2**63),
    2**31 - 1,
    3.141592653589793,
    0.5,
    True,
    "grüße",
    b"\x00\xff",
    1_700_000_000_000_000,
    [1, -2],
    [3],
    [0.25, 1e300],
    [1.5],
    ["a", "", "ç"],
]
VIEW = ViewTable("proj", "view")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OnlineStore]:
    backend = request.param.removeprefix("cached_").removeprefix("legacy_")
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'online.db'}"
    else:
        url = request.getfixturevalue(f"{backend}_url")
    opened = open_online_store(url)
    if isinstance(opened, DynamoOnlineStore):
        # moto is one Python process: on a busy machine a reply (of 100 items under 100
        # concurrent BatchGetItems) took longer than the 2 s meant for DynamoDB itself.
        opened.config = dataclasses.replace(opened.config, read_timeout_s=30.0)
    if request.param.startswith("legacy_"):
        opened = LegacyKeysStore(opened)
    elif backend != request.param:
        ttl_ms = None if backend in ("redis", "rediss", "cluster") else 60_000.0
        opened = CachedOnlineStore(opened, NearCache(CacheLimits(ttl_ms=ttl_ms)))
    yield opened
    await opened.close()


def row(
    event: int, created: int | None = 0, value: int = 0, codec: RowCodec | None = None
) -> bytes:
    codec = codec or RowCodec([Feature("n", ValueType.INT64)])
    return codec.encode(event, created, [value] if len(codec.features) == 1 else VALUES)


async def read_one(store: OnlineStore, table: ViewTable, key: bytes) -> bytes | None:
    return (await store.read([ReadRequest(table, [key])]))[0][0]


async def test_round_trip_of_every_type(store: OnlineStore) -> None:
    key = encode_key([42, "m1"])
    data = CODEC.encode(10, 11, VALUES)
    assert await store.write(VIEW, [(key, data)]) == WriteResult(1, 0)
    stored = await read_one(store, VIEW, key)
    assert stored is not None
    assert list(CODEC.decode(stored).values) == VALUES
    nulls = CODEC.encode(12, 11, [None] * len(FEATURES))
    await store.write(VIEW, [(key, nulls)])
    stored = await read_one(store, VIEW, key)
    assert stored is not None
    assert CODEC.decode(stored).values == (None,) * len(FEATURES)


async def test_missing_keys_and_several_views_in_one_read(store: OnlineStore) -> None:
    other = ViewTable("proj", "other")
    elsewhere = ViewTable("other_project", "view")
    k1, k2, k3 = encode_key([1]), encode_key([2]), encode_key(["x"])
    await store.write(VIEW, [(k1, row(1, value=10)), (k3, row(1, value=30))])
    await store.write(other, [(k1, row(1, value=11))])
    got = await store.read(
        [
            ReadRequest(VIEW, [k2, k1, k3, k1]),
            ReadRequest(other, [k1, k2]),
            ReadRequest(elsewhere, [k1]),
            ReadRequest(VIEW, []),
        ]
    )
    assert got == [
        [None, row(1, value=10), row(1, value=30), row(1, value=10)],
        [row(1, value=11), None],
        [None],
        [],
    ]
    assert await store.read([]) == []


async def test_conditional_writes(store: OnlineStore) -> None:
    key = encode_key([7])

    async def put(event: int, created: int | None, value: int) -> WriteResult:
        return await store.write(VIEW, [(key, row(event, created, value))])

    async def stored_value() -> int:
        data = await read_one(store, VIEW, key)
        assert data is not None
        return int(RowCodec([Feature("n", ValueType.INT64)]).decode(data).values[0])

    assert await put(100, 5, 1) == WriteResult(1, 0)
    assert await put(200, 1, 2) == WriteResult(1, 0)  # newer event wins
    assert await put(150, 9, 3) == WriteResult(0, 1)  # older event is skipped
    assert await put(200, 1, 4) == WriteResult(0, 1)  # equal timestamps are skipped
    assert await put(200, 0, 5) == WriteResult(0, 1)  # same event, older created: skipped
    assert await put(200, None, 6) == WriteResult(0, 1)  # no created sorts lowest
    assert await stored_value() == 2
    assert await put(200, 2, 7) == WriteResult(1, 0)  # same event, later created wins
    assert await stored_value() == 7
    assert await put(-5, 0, 8) == WriteResult(0, 1)  # pre-1970 is older still
    assert await stored_value() == 7


async def test_equal_timestamps_under_a_new_schema_replace(store: OnlineStore) -> None:
    key = encode_key([1])
    old = RowCodec([Feature("n", ValueType.INT64)])
    new = RowCodec([Feature("n", ValueType.INT64), Feature("added", ValueType.STRING)])
    await store.write(VIEW, [(key, old.encode(10, 1, [1]))])
    assert await store.write(VIEW, [(key, new.encode(10, 1, [1, "x"]))]) == WriteResult(1, 0)
    assert await store.write(VIEW, [(key, new.encode(10, 1, [1, "x"]))]) == WriteResult(0, 1)
    stored = await read_one(store, VIEW, key)
    assert stored is not None
    assert new.decode(stored).values == (1, "x")


async def test_every_backend_applies_the_is_newer_rule(store: OnlineStore) -> None:
    codecs = [
        RowCodec([Feature("n", ValueType.INT64)]),
        RowCodec([Feature("n", ValueType.INT64), Feature("m", ValueType.INT32)]),
    ]
    stamps = [(5, None), (5, 1), (5, 2), (6, 0), (4, 9)]
    rows = [c.encode(e, cr, [1] * len(c.features)) for c in codecs for e, cr in stamps]
    for i, old in enumerate(rows):
        for j, new in enumerate(rows):
            key = encode_key([i * 100 + j])
            await store.write(VIEW, [(key, old)])
            result = await store.write(VIEW, [(key, new)])
            assert result.written == int(is_newer(new, old)), (i, j)


async def test_mixed_batch_counts(store: OnlineStore) -> None:
    keys = [encode_key([i]) for i in range(6)]
    await store.write(VIEW, [(k, row(100)) for k in keys[:3]])
    batch = [(keys[0], row(50)), (keys[1], row(100)), (keys[2], row(101))]
    batch += [(k, row(1)) for k in keys[3:]]
    assert await store.write(VIEW, batch) == WriteResult(4, 2)
    assert await store.write(VIEW, []) == WriteResult(0, 0)


async def test_rows_expire_after_the_ttl(store: OnlineStore) -> None:
    table = ViewTable("proj", "short", ttl_micros=1_000_000)
    forever = ViewTable("proj", "forever")
    key = encode_key([1])
    now = now_micros()
    await store.write(table, [(key, row(now, 0, 1))])
    await store.write(forever, [(key, row(now, 0, 1))])
    assert await read_one(store, table, key) is not None
    await asyncio.sleep(1.3)
    assert await read_one(store, table, key) is None
    assert await read_one(store, forever, key) is not None
    # Once expired, the key is free: even an older row is written.
    assert await store.write(table, [(key, row(now - 10, 0, 2))]) == WriteResult(1, 0)


async def test_ttl_counts_from_the_write_for_historical_rows(store: OnlineStore) -> None:
    table = ViewTable("proj", "history", ttl_micros=3_600_000_000)
    key = encode_key([1])
    await store.write(table, [(key, row(now_micros() - 86_400_000_000, 0, 1))])
    assert await read_one(store, table, key) is not None


async def test_watermarks(store: OnlineStore) -> None:
    assert await store.read_watermarks("proj", ["a", "b"]) == {}
    await store.write_watermark("proj", "a", 1_000)
    await store.write_watermark("proj", "a", 500)  # never moves backwards
    await store.write_watermark("other", "b", 7)
    assert await store.read_watermarks("proj", ["a", "b"]) == {"a": 1_000}
    await store.write_watermark("proj", "a", 1_767_225_600_000_000)
    assert await store.read_watermarks("proj", ["a"]) == {"a": 1_767_225_600_000_000}
    assert await store.read_watermarks("other", ["b"]) == {"b": 7}
    assert await store.read_watermarks("proj", []) == {}


async def test_ten_thousand_row_batches(store: OnlineStore) -> None:
    # No time bound here (benchmarks report speed; the per-test timeout still bounds it):
    # on moto a DynamoDB PutItem costs ~2.6 ms, so this takes about a minute there.
    keys = [encode_key([i, f"m{i % 97}"]) for i in range(10_000)]
    rows = [(k, CODEC.encode(i, i, VALUES)) for i, k in enumerate(keys)]
    assert await store.write(VIEW, rows) == WriteResult(10_000, 0)
    assert await store.write(VIEW, rows) == WriteResult(0, 10_000)
    (got,) = await store.read([ReadRequest(VIEW, keys)])
    assert got == [r for _, r in rows]


async def test_ping(store: OnlineStore) -> None:
    await store.ping()


async def test_unreachable_redis_fails_fast() -> None:
    store = open_online_store(f"redis://127.0.0.1:{free_port()}/0")
    started = time.perf_counter()
    with pytest.raises(StoreUnavailableError, match=r"redis at 127\.0\.0\.1:\d+ is unreachable"):
        await store.write(VIEW, [(encode_key([1]), row(1))])
    with pytest.raises(StoreUnavailableError):
        await store.ping()
    assert time.perf_counter() - started < 5
    await store.close()


async def test_unusable_sqlite_path(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    store = open_online_store(f"sqlite:///{tmp_path / 'dir.db'}")
    with pytest.raises(StoreError, match=r"dir\.db"):
        await store.ping()
    await store.close()


@pytest.mark.parametrize("url", ["postgres://x", "sqlite://", "redis:///0", "nothing"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(StoreError, match="online store URL"):
        open_online_store(url)


async def test_delete_removes_rows_whatever_their_time(store: OnlineStore) -> None:
    far_future = 253_402_300_799_000_000  # 9999-12-31T23:59:59Z: would win every write
    keys = [encode_key([i]) for i in range(3)]
    await store.write(VIEW, [(keys[0], row(far_future)), (keys[1], row(5))])
    other_view = ViewTable("proj", "other")
    await store.write(other_view, [(keys[0], row(5))])
    assert await store.delete(VIEW, [keys[0], keys[2]]) == 1  # keys[2] was never stored
    assert await read_one(store, VIEW, keys[0]) is None
    assert await read_one(store, VIEW, keys[1]) is not None
    assert await read_one(store, other_view, keys[0]) is not None  # another view's row
    assert await store.write(VIEW, [(keys[0], row(6))]) == WriteResult(1, 0)  # repaired
    assert await store.delete(VIEW, []) == 0


async def test_a_reader_of_another_schema_learns_it_from_the_store(store: OnlineStore) -> None:
    old = RowCodec([Feature("a", ValueType.INT64), Feature("gone", ValueType.STRING)])
    new = RowCodec([Feature("added", ValueType.DOUBLE), Feature("a", ValueType.INT64)])
    await record_schema(store, VIEW, old)
    await record_schema(store, VIEW, old)  # again: a no-op, not an error
    key = encode_key([1])
    await store.write(VIEW, [(key, old.encode(5, None, [7, "x"]))])
    (rows,) = await store.read([ReadRequest(VIEW, [key])])
    assert unknown_schemas(new, rows) == {old.fingerprint}
    await learn_schemas(store, VIEW, new, unknown_schemas(new, rows))
    assert new.decode(rows[0]).values == (None, 7)
    assert unknown_schemas(new, rows) == set()
    # A schema nobody recorded: named, with its view, not decoded as something else.
    stray = RowCodec([Feature("stray", ValueType.BOOL)])
    with pytest.raises(UnknownSchemaError, match=r"'view'.*no record") as missing:
        await learn_schemas(store, VIEW, new, [stray.fingerprint])
    assert missing.value.fingerprint == stray.fingerprint
    # The schema rows live apart from the view's rows: a read of the view never sees them.
    (mine,) = await store.read([ReadRequest(VIEW, [old.fingerprint.to_bytes(4, "big")])])
    assert mine == [None]

"""Rows stored by Ferry before the key layout changed: found, never shadowed by older rows,
deleted with the new ones; the key layouts themselves, byte for byte."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ferry.core import Feature, RowCodec, ValueType, encode_key
from ferry.core.errors import InvalidValueError
from ferry.stores import ReadRequest, ViewTable, open_online_store
from ferry.stores.base import OnlineStore, check_distinct_prefixes, hashed_prefix
from ferry.stores.legacy_keys import LegacyKeysStore
from ferry.stores.resp import RespConnection

GOLDEN = json.loads((Path(__file__).parents[1] / "core" / "data" / "v1_rows.json").read_text())
FEATURES = [Feature(name, ValueType(kind)) for name, kind in GOLDEN["features"]]
V1_ROW = bytes.fromhex(GOLDEN["rows"][0]["hex"])  # event 1_700_000_000_000_000
VIEW = ViewTable("proj", "view")
OLD = dataclasses.replace(VIEW, legacy_keys=True)
CODEC = RowCodec(FEATURES)


@pytest.fixture(params=["redis", "sqlite"])
async def inner(request: pytest.FixtureRequest) -> AsyncIterator[OnlineStore]:
    store = open_online_store(request.getfixturevalue(f"{request.param}_url"))
    yield store
    await store.close()


async def test_rows_under_the_old_layout_are_served_until_a_newer_row_is_written(
    inner: OnlineStore,
) -> None:
    migrating = LegacyKeysStore(inner)
    older, newer, gone = encode_key([1]), encode_key([2]), encode_key([3])
    values = [None] * len(FEATURES)
    await inner.write(OLD, [(older, V1_ROW), (newer, V1_ROW), (gone, V1_ROW)])
    assert (await inner.read([ReadRequest(VIEW, [older])])) == [[None]]
    (found,) = await migrating.read([ReadRequest(VIEW, [older, newer, encode_key([9])])])
    assert found == [V1_ROW, V1_ROW, None]
    assert CODEC.decode(found[0]).event_timestamp == 1_700_000_000_000_000
    # An older row written since under the new layout does not hide the stored one...
    written = await migrating.write(VIEW, [(older, CODEC.encode(5, None, values))])
    assert written.written == 1
    # ...a newer one replaces it, and is what is served.
    fresh = CODEC.encode(1_800_000_000_000_000, None, values)
    await migrating.write(VIEW, [(newer, fresh)])
    (found,) = await migrating.read([ReadRequest(VIEW, [older, newer])])
    assert found == [V1_ROW, fresh]
    # Deleting removes both layouts' rows, so the old one cannot come back.
    assert await migrating.delete(VIEW, [older, gone]) == 3
    (found,) = await migrating.read([ReadRequest(VIEW, [older, gone])])
    assert found == [None, None]
    assert (await inner.read([ReadRequest(OLD, [older, gone, newer])])) == [[None, None, V1_ROW]]


async def test_the_key_layouts_byte_for_byte(redis_url: str) -> None:
    store = open_online_store(redis_url)
    raw = RespConnection(redis_url, 5, 2)
    try:
        key = encode_key([7])
        await store.write(VIEW, [(key, CODEC.encode(1, None, [None] * len(FEATURES)))])
        await store.write(OLD, [(key, V1_ROW)])
        # What Ferry wrote before: the readable project:view: prefix.
        assert await raw.execute(b"GET", b"proj:view:" + key) == V1_ROW
        prefix = hashed_prefix("proj", "view")
        assert len(prefix) == 5
        assert await raw.execute(b"EXISTS", prefix + key) == 1
    finally:
        await raw.close()
        await store.close()


def test_hashed_prefixes_are_never_ascii_and_never_hold_a_brace() -> None:
    prefixes = [hashed_prefix("p", f"v{i}") for i in range(20_000)]
    assert all(p[0] >= 0x80 and b"{" not in p for p in prefixes)
    assert len(set(prefixes)) == len(prefixes)


def test_two_views_whose_prefixes_collide_are_refused() -> None:
    # Found by search: these two names share a 5-byte prefix in project "p".
    assert hashed_prefix("p", "v141578") == hashed_prefix("p", "v622517")
    check_distinct_prefixes("p", ["v141578", "other"])
    with pytest.raises(InvalidValueError, match="'v141578' and 'v622517'") as err:
        check_distinct_prefixes("p", ["v141578", "other", "v622517"])
    assert err.value.reason == "KEY_PREFIX_COLLISION"

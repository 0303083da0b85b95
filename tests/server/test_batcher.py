"""Natural batching: merging, deduplication, splitting, errors and cancellation, over an
in-memory reader whose calls the test holds open."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ferry.server.serving import NaturalBatcher
from ferry.stores.base import ReadRequest, ViewTable

USERS = ViewTable("p", "users")
ITEMS = ViewTable("p", "items")


class HeldReader:
    """Answers key -> b"v:" + key (None for keys starting with "x") once released."""

    def __init__(self) -> None:
        self.calls: list[list[ReadRequest]] = []
        self.release = asyncio.Event()
        self.fail_with: Exception | None = None

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        self.calls.append(list(requests))
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [[None if k.startswith(b"x") else b"v:" + k for k in r.keys] for r in requests]


def ask(*pairs: tuple[ViewTable, list[bytes]]) -> list[ReadRequest]:
    return [ReadRequest(table, keys) for table, keys in pairs]


def expected(requests: list[ReadRequest]) -> list[list[bytes | None]]:
    return [[None if k.startswith(b"x") else b"v:" + k for k in r.keys] for r in requests]


async def test_an_idle_read_goes_straight_to_the_store() -> None:
    store = HeldReader()
    store.release.set()
    batcher = NaturalBatcher(store, max_in_flight=1)
    request = ask((USERS, [b"1", b"x2"]))
    assert await batcher.read(request) == expected(request)
    assert (batcher.store_reads, batcher.requests) == (1, 1)


async def test_reads_arriving_while_busy_share_one_deduplicated_read() -> None:
    store = HeldReader()
    batcher = NaturalBatcher(store, max_in_flight=1)
    first = asyncio.ensure_future(batcher.read(ask((USERS, [b"1"]))))
    await asyncio.sleep(0)
    later = [
        ask((USERS, [b"2", b"3"]), (ITEMS, [b"a"])),
        ask((ITEMS, [b"a", b"b"]), (USERS, [b"3", b"x9"])),
        ask((USERS, [b"2", b"2"])),
    ]
    waiting = [asyncio.ensure_future(batcher.read(r)) for r in later]
    await asyncio.sleep(0)
    assert len(store.calls) == 1  # all three wait for the first read
    store.release.set()
    assert await first == [[b"v:1"]]
    for request, result in zip(later, await asyncio.gather(*waiting), strict=True):
        assert result == expected(request)
    assert len(store.calls) == 2
    merged = {r.table: list(r.keys) for r in store.calls[1]}
    assert merged == {USERS: [b"2", b"3", b"x9"], ITEMS: [b"a", b"b"]}
    assert (batcher.store_reads, batcher.requests) == (2, 4)


async def test_max_in_flight_reads_go_out_before_any_waits() -> None:
    store = HeldReader()
    batcher = NaturalBatcher(store, max_in_flight=3)
    reads = [asyncio.ensure_future(batcher.read(ask((USERS, [b"%d" % i])))) for i in range(5)]
    await asyncio.sleep(0)
    assert len(store.calls) == 3
    store.release.set()
    assert [r[0][0] for r in await asyncio.gather(*reads)] == [b"v:%d" % i for i in range(5)]
    assert len(store.calls) == 4  # the two that waited went together


async def test_a_failed_merged_read_fails_each_of_its_requests() -> None:
    store = HeldReader()
    batcher = NaturalBatcher(store, max_in_flight=1)
    first = asyncio.ensure_future(batcher.read(ask((USERS, [b"1"]))))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(batcher.read(ask((USERS, [b"2"])))) for _ in range(3)]
    await asyncio.sleep(0)
    store.fail_with = ConnectionError("store down")
    store.release.set()
    for read in (first, *waiting):
        with pytest.raises(ConnectionError, match="store down"):
            await read
    store.fail_with = None  # the batcher is usable afterwards
    assert await batcher.read(ask((USERS, [b"5"]))) == [[b"v:5"]]


async def test_a_waiter_that_gives_up_is_left_out() -> None:
    store = HeldReader()
    batcher = NaturalBatcher(store, max_in_flight=1)
    first = asyncio.ensure_future(batcher.read(ask((USERS, [b"1"]))))
    await asyncio.sleep(0)
    gives_up = asyncio.ensure_future(batcher.read(ask((USERS, [b"gone"]))))
    stays = asyncio.ensure_future(batcher.read(ask((USERS, [b"2"]))))
    await asyncio.sleep(0)
    gives_up.cancel()
    store.release.set()
    await first
    assert await stays == [[b"v:2"]]
    assert [list(r.keys) for r in store.calls[1]] == [[b"2"]]


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        NaturalBatcher(HeldReader(), 0)

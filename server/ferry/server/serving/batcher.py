"""Natural batching of store reads across concurrent requests.

At most ``max_in_flight`` store reads run at once. A request that arrives while all are busy
waits; when a read finishes, every waiting request goes out together in the next one, keys
of the same view merged and deduplicated. Idle, a request goes straight to the store (no
timer, no added latency); under load, batches form by themselves, as large as the store's
round trip is long, which cuts the per-call costs (a command, a syscall each way, a parse)
that dominate small requests.

Why not "per event-loop tick" coalescing: grpc.aio hands each RPC to the loop separately,
so requests almost never share a tick (measured: 1.02 requests per store call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ferry.stores.base import Reader, ReadRequest, ViewTable

_Waiter = tuple[Sequence[ReadRequest], "asyncio.Future[list[list[bytes | None]]]"]


class NaturalBatcher:
    """A ``Reader`` over a store that merges reads arriving while ``max_in_flight`` run.

    Counters (for benchmarks and logs): ``store_reads`` store calls made, ``requests``
    reads asked for; their ratio is the batching achieved.
    """

    def __init__(self, store: Reader, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._store = store
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._waiting: list[_Waiter] = []
        self.store_reads = 0
        self.requests = 0

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        self.requests += 1
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            self.store_reads += 1
            try:
                return await self._store.read(requests)
            finally:
                self._done()
        future: asyncio.Future[list[list[bytes | None]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append((requests, future))
        return await future

    def _done(self) -> None:
        self._in_flight -= 1
        # Callers that stopped waiting (deadline, cancellation) are dropped from the batch.
        waiting = [w for w in self._waiting if not w[1].done()]
        self._waiting = []
        if waiting:
            self._in_flight += 1
            self.store_reads += 1
            asyncio.get_running_loop().create_task(self._read_together(waiting))

    async def _read_together(self, waiting: list[_Waiter]) -> None:
        try:
            merged, positions = _merge(waiting)
            found = await self._store.read(merged)
        except BaseException as err:  # every waiter gets the store's error, as if alone
            for _, future in waiting:
                if future.done():
                    continue
                if isinstance(err, Exception):
                    future.set_exception(err)
                else:  # this task was cancelled (shutdown): so are the waiters
                    future.cancel()
            if not isinstance(err, Exception):
                raise
            return
        else:
            for (_, future), where in zip(waiting, positions, strict=True):
                if not future.done():
                    future.set_result(_split(found, where))
        finally:
            self._done()


def _merge(
    waiting: list[_Waiter],
) -> tuple[list[ReadRequest], list[list[tuple[int, list[int]]]]]:
    """One read for all waiters, keys deduplicated per view; and for each waiter, per
    request, the index of its view in the merged read and of each of its keys there."""
    tables: dict[ViewTable, int] = {}
    keys: list[list[bytes]] = []
    slots: list[dict[bytes, int]] = []
    positions = []
    for requests, _ in waiting:
        mine = []
        for request in requests:
            t = tables.get(request.table)
            if t is None:
                t = tables[request.table] = len(keys)
                keys.append([])
                slots.append({})
            table_keys, table_slots = keys[t], slots[t]
            indexes = []
            for key in request.keys:
                i = table_slots.get(key)
                if i is None:
                    i = table_slots[key] = len(table_keys)
                    table_keys.append(key)
                indexes.append(i)
            mine.append((t, indexes))
        positions.append(mine)
    merged = [ReadRequest(table, keys[t]) for table, t in tables.items()]
    return merged, positions


def _split(
    found: list[list[bytes | None]], where: list[tuple[int, list[int]]]
) -> list[list[bytes | None]]:
    return [[found[t][i] for i in indexes] for t, indexes in where]

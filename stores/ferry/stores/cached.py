"""An online store with a near cache (``ferry.stores.near_cache``) in front of its reads.

Reads ask the cache first and the store for the rest, in one store call as before. A store
that can keep the cache exact offers ``track_into(cache)`` (Redis and Redis Cluster:
invalidations on the read connections); any other store may only be cached with a time
bound (``ttl_ms``), since nothing would tell this process of another's writes. Writes and
deletes through this store invalidate their keys here as soon as the store answers, so a
process reads its own writes at once whatever the store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ferry.core.codec import event_timestamp_of
from ferry.core.errors import StoreError
from ferry.stores.base import (
    OnlineStore,
    ReadRequest,
    ViewTable,
    WriteResult,
    backend_name,
    storage_key,
)
from ferry.stores.near_cache import NearCache

_FOREVER = float("inf")


class CachedOnlineStore:
    """``store`` with ``cache`` in front of its reads; everything else passes through."""

    def __init__(self, store: OnlineStore, cache: NearCache) -> None:
        self.store = store
        self.cache = cache
        self.backend = backend_name(store)
        self.natural_batching_reads = store.natural_batching_reads
        track_into = getattr(store, "track_into", None)
        self.exact = track_into is not None  # else bounded by ttl_ms only
        if track_into is not None:
            track_into(cache)
        elif cache.limits.ttl_ms is None:
            raise StoreError(
                f"the {self.backend} store sends no invalidations: its near cache needs a time "
                "bound (--cache-ttl-ms), the most a served value may lag a write elsewhere"
            )

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        cache = self.cache
        now_us = time.time_ns() // 1000
        answers: list[list[Any]] = []
        missing: list[ReadRequest] = []
        missing_keys: list[bytes] = []  # their storage keys, as the cache knows them
        holes: list[tuple[list[Any], list[int]]] = []  # where the store's rows go
        for request in requests:
            prefix = request.table.key_prefix
            full = [prefix + key for key in request.keys]
            values, positions = cache.get_many(full, now_us)
            answers.append(values)
            if positions:
                keys = request.keys
                missing.append(ReadRequest(request.table, [keys[i] for i in positions]))
                missing_keys.extend([full[i] for i in positions])
                holes.append((values, positions))
        if not missing:
            return answers
        ticket = cache.begin(missing_keys)
        try:
            found = await self.store.read(missing)
        except BaseException:
            cache.finish(ticket, None)
            raise
        rows = [row for rows_of_one in found for row in rows_of_one]
        cache.finish(ticket, rows, _fresh_until(missing, found), now_us)
        for (values, positions), rows_of_one in zip(holes, found, strict=True):
            for position, row in zip(positions, rows_of_one, strict=True):
                values[position] = row
        return answers

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        try:
            return await self.store.write(table, rows)
        finally:  # a failed write may still have stored some rows
            self.cache.invalidate([storage_key(table, key) for key, _ in rows])

    async def delete(self, table: ViewTable, keys: Sequence[bytes]) -> int:
        try:
            return await self.store.delete(table, keys)
        finally:
            self.cache.invalidate([storage_key(table, key) for key in keys])

    async def close(self) -> None:
        self.cache.flush()
        await self.store.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _fresh_until(
    requests: Sequence[ReadRequest], found: Sequence[Sequence[bytes | None]]
) -> list[float]:
    """Per row read, when its view TTL runs out (µs): from then on the store may have
    expired the key, so the cache must ask it again (``ferry.stores.near_cache``)."""
    out: list[float] = []
    for request, rows in zip(requests, found, strict=True):
        ttl = request.table.ttl_micros
        if ttl is None:
            out.extend([_FOREVER] * len(rows))
        else:
            out.extend([_FOREVER if row is None else event_timestamp_of(row) + ttl for row in rows])
    return out

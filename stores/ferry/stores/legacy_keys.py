"""Reading rows stored under the key layout before December 2026, while a store migrates.

Ferry once keyed rows ``project:view:<entity key>``; it now keys them by a 5-byte hash of
the project and view (``ferry.stores.base.hashed_prefix``), and writes only those. A store
that still holds rows written then is served through ``LegacyKeysStore`` (``ferry serve
--read-legacy-keys``) until they are rewritten or gone: each read asks for both keys of
every entity in the same store call (one round trip, twice the keys), and answers the
newer row of the two by the rule every write follows (``is_newer``), so a row written
under the old layout is never shadowed by an older one written since. Deletes remove both
keys, or the old row would come back once the new one is gone.

The old rows leave as they expire (their view's TTL), or are made redundant by a
materialization from the start of the view's window; docs/storage-format.md says when to
stop reading them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ferry.core.codec import timestamp_prefix
from ferry.stores.base import (
    OnlineStore,
    ReadRequest,
    ViewTable,
    WriteResult,
    backend_name,
)


class LegacyKeysStore:
    """``store`` read under both key layouts; writes go to the current one only."""

    def __init__(self, store: OnlineStore) -> None:
        self.store = store
        self.backend = backend_name(store)
        self.natural_batching_reads = store.natural_batching_reads
        self._legacy: dict[ViewTable, ViewTable] = {}

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        legacy = [ReadRequest(self._legacy_of(r.table), r.keys) for r in requests]
        found = await self.store.read([*requests, *legacy])
        current, old = found[: len(requests)], found[len(requests) :]
        return [
            [_newer(new, before) for new, before in zip(rows, old_rows, strict=True)]
            for rows, old_rows in zip(current, old, strict=True)
        ]

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        return await self.store.write(table, rows)

    async def delete(self, table: ViewTable, keys: Sequence[bytes]) -> int:
        current = await self.store.delete(table, keys)
        return current + await self.store.delete(self._legacy_of(table), keys)

    def _legacy_of(self, table: ViewTable) -> ViewTable:
        legacy = self._legacy.get(table)
        if legacy is None:
            legacy = self._legacy[table] = dataclasses.replace(table, legacy_keys=True)
        return legacy

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _newer(row: bytes | None, legacy: bytes | None) -> bytes | None:
    """The row to serve of an entity's two: the newer by timestamps, the current layout's
    on a tie (a re-materialization wrote it after the old one)."""
    if legacy is None:
        return row
    if row is None or timestamp_prefix(legacy) > timestamp_prefix(row):
        return legacy
    return row

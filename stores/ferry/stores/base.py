"""The online store Protocol: the one seam between Ferry and its key-value backends.

A store keeps, per (project, view, entity key), the encoded row with the greatest
(event_timestamp, created_timestamp) it was ever given, and per (project, view) a
watermark. It does four things, each in one round trip per call where the backend allows:

* ``read``: the rows of many keys of several views at once (serving asks for all views of a
  request together);
* ``write``: a batch of rows of one view, each stored only if it is newer than the stored
  row (see ``is_newer``); returns how many were written and how many skipped;
* ``read_watermarks`` / ``write_watermark``: how far materialization has got, per view;
  a watermark never moves backwards;
* ``delete``: an operator's repair of some keys (``ferry delete-rows``), unconditional.

Rows carry their own timestamps and schema fingerprint in a fixed header (bytes 1..16 and
17..20, see ``ferry.core.codec``), so a store compares rows without decoding them.

How the distributed backends fit this Protocol unchanged:

* Redis Cluster (``ferry.stores.redis_cluster``): keys hash to slots (CRC16); ``read`` groups
  keys by slot and sends one MGET per slot, pipelined on one ``RespConnection`` per primary
  (the slot map read with CLUSTER SLOTS, re-read after a MOVED reply or a lost node), the
  primaries concurrently, then restores request order. ``write`` groups rows by slot and
  runs the same Lua script once per slot group (a script may only touch keys of one slot),
  all pipelined. Watermarks live in one hash key, which sits in one slot.
* DynamoDB: one table, partition key = the storage key, attributes ``v`` (row bytes), ``ts``
  (the 16 header bytes, a binary attribute, compared bytewise like here), ``fp`` and
  ``expires_at`` (DynamoDB TTL in seconds). ``read`` splits the keys into BatchGetItem calls of
  at most 100 distinct keys, sends them concurrently, and re-sends UnprocessedKeys with
  backoff until all are answered or the deadline passes. ``write`` issues conditional
  PutItems (``attribute_not_exists(pk) OR ts < :ts OR (ts = :ts AND fp <> :fp)``)
  concurrently; ConditionalCheckFailed counts as "skipped, stored row is newer", not an error.
  Watermarks are items with a reserved key prefix, updated with a ``< :new`` condition.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ferry.core.codec import event_timestamp_of, fingerprint_of, timestamp_prefix
from ferry.core.errors import InvalidValueError


@dataclass(frozen=True)
class ViewTable:
    """What a store needs to know of a feature view to keep its rows.

    Attributes:
        project: The repo's project; keys of different projects never collide.
        view: The feature view's name.
        ttl_micros: Rows may be dropped this long after max(write time, event time);
            None keeps them forever.
    """

    project: str
    view: str
    ttl_micros: int | None = None
    legacy_keys: bool = False
    """Keys of the layout before December 2026 (``project:view:``), for reading and
    deleting rows written then (``ferry.stores.legacy_keys``); nothing writes them now."""

    @functools.cached_property
    def key_prefix(self) -> bytes:
        """Prefix of every storage key of this view (built once: a batch-100 lookup asks
        for it 200 times): ``hashed_prefix`` or, for ``legacy_keys``, ``project:view:``."""
        if self.legacy_keys:
            return f"{self.project}:{self.view}:".encode()
        return hashed_prefix(self.project, self.view)

    @functools.cached_property
    def schemas(self) -> ViewTable:
        """Where the view's schemas are recorded, one row per fingerprint
        (``ferry.stores.schemas``): a table of its own, kept forever. ``#`` cannot appear in
        a view name, so this never is another view's table."""
        return ViewTable(self.project, f"{self.view}#schemas")


PREFIX_BYTES = 5


def hashed_prefix(project: str, view: str) -> bytes:
    """The 5-byte key prefix of a (project, view): BLAKE2b of the two names.

    Short, since Redis keeps every key in full: a readable ``fraud:user_merchant_stats:``
    cost a pair row 24 of its ~220 bytes. The first byte has its high bit set, so no prefix
    is ASCII and none can collide with a legacy key, a watermark key or any name a person
    gives; no byte is ``{``, so a Redis Cluster never takes part of a prefix for a hash tag
    (which could send every key of a view to one slot). 39 bits of hash: two views of one
    repo that collide are refused (``check_distinct_prefixes``); between repos sharing a
    store, two of a thousand views collide with odds of about 1 in a million.
    """
    digest = bytearray(
        hashlib.blake2b(f"{project}\0{view}".encode(), digest_size=PREFIX_BYTES).digest()
    )
    digest[0] |= 0x80
    return bytes(digest).replace(b"{", b"|")


def check_distinct_prefixes(project: str, views: Iterable[str]) -> None:
    """Refuse a repo two of whose views would share a key prefix.

    Raises:
        InvalidValueError: two views' prefixes are equal; names both.
    """
    seen: dict[bytes, str] = {}
    tables = [name for view in views for name in (view, ViewTable(project, view).schemas.view)]
    for view in tables:
        prefix = hashed_prefix(project, view)
        other = seen.setdefault(prefix, view)
        if other != view:
            raise InvalidValueError(
                f"feature views {other!r} and {view!r} of project {project!r} hash to the same "
                f"storage key prefix {prefix.hex()}; rename one",
                reason="KEY_PREFIX_COLLISION",
            )


@dataclass(frozen=True)
class ReadRequest:
    """Keys of one view to read (canonical entity keys, see ``ferry.core.keys``)."""

    table: ViewTable
    keys: Sequence[bytes]


class Reader(Protocol):
    """Anything with the store's ``read`` (a store, or the server's batcher in front of one)."""

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]: ...


@dataclass(frozen=True)
class WriteResult:
    """Outcome of a conditional batch write.

    Attributes:
        written: Rows that were stored (newer than the stored row, or none was stored).
        skipped_not_newer: Rows not stored because the stored row was as new or newer.
    """

    written: int
    skipped_not_newer: int

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.written + other.written, self.skipped_not_newer + other.skipped_not_newer
        )


class OnlineStore(Protocol):
    """An online store backend. All methods are coroutines; none retries on its own."""

    natural_batching_reads: int
    """How many reads the server lets run at once when batching is left to the store
    (``Limits.store_reads_in_flight`` None): 0 for none, where a store call is as cheap
    as batching would save."""

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        """Rows for every key of every request, None where absent or expired.

        Returns one list per request, each aligned with the request's keys.
        """

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        """Store (entity key, encoded row) pairs of one view, each only if newer.

        A row is newer when its (event, created) timestamps are greater than the stored
        row's, or equal but written under another schema fingerprint (re-materializing after
        a view gained a feature must refresh rows). Keys must be distinct within a call.
        """

    async def delete(self, table: ViewTable, keys: Sequence[bytes]) -> int:
        """Remove the stored rows of these entity keys of one view, whatever their
        timestamps; returns how many there were. For repairs only (a row from the far
        future that would otherwise win every conditional write): never on the hot path.
        """

    async def read_watermarks(self, project: str, views: Sequence[str]) -> dict[str, int]:
        """The watermark (µs) of each view that has one."""

    async def write_watermark(self, project: str, view: str, micros: int) -> None:
        """Raise the view's watermark to ``micros``; a lower value leaves it unchanged."""

    async def ping(self) -> None:
        """Return when the store answers; raise StoreUnavailableError when it does not."""

    async def initialize(self) -> str:
        """Create what the backend needs before first use (a DynamoDB table); idempotent.
        Returns a line saying what was done (``ferry init-store`` prints it)."""

    async def close(self) -> None:
        """Release connections. The store is unusable afterwards."""


def backend_name(store: object) -> str:
    """A store's short name (``sqlite``, ``redis``, ``dynamodb``), for metrics and traces;
    a wrapper around a store (timing, tracing) names the store it wraps as ``backend``."""
    named = getattr(store, "__dict__", {}).get("backend")
    if isinstance(named, str):
        return named
    return type(store).__name__.removesuffix("OnlineStore").lower() or "store"


def storage_key(table: ViewTable, entity_key: bytes) -> bytes:
    """The backend key of one entity's row in one view."""
    return table.key_prefix + entity_key


def storage_keys(requests: Sequence[ReadRequest]) -> list[bytes]:
    """The backend keys of every key of every request, in order."""
    out: list[bytes] = []
    for request in requests:
        prefix = request.table.key_prefix
        out.extend([prefix + key for key in request.keys])
    return out


def per_request(
    requests: Sequence[ReadRequest], values: list[bytes | None]
) -> list[list[bytes | None]]:
    """Values read for ``storage_keys(requests)`` cut back into one list per request."""
    out, start = [], 0
    for request in requests:
        out.append(values[start : start + len(request.keys)])
        start += len(request.keys)
    return out


def is_newer(new_row: bytes, stored_row: bytes) -> bool:
    """The conditional-write rule every backend implements (in Lua, SQL or a condition)."""
    return is_newer_than(new_row, timestamp_prefix(stored_row), fingerprint_of(stored_row))


def is_newer_than(new_row: bytes, stored_timestamp: bytes, stored_fingerprint: int) -> bool:
    """``is_newer`` against a stored row known only by its timestamp bytes and schema
    fingerprint (what DynamoDB keeps beside the row, read without it)."""
    new_ts = timestamp_prefix(new_row)
    if new_ts != stored_timestamp:
        return new_ts > stored_timestamp
    return fingerprint_of(new_row) != stored_fingerprint


def expiries_at_ms(table: ViewTable, rows: Sequence[bytes], now_ms: int) -> list[int] | None:
    """``expires_at_ms`` of many rows at once (their event times read from the headers as
    one numpy array); None when the view keeps rows forever."""
    if table.ttl_micros is None:
        return None
    headers = b"".join([row[1:9] for row in rows])
    events = (np.frombuffer(headers, ">u8") ^ np.uint64(1 << 63)).astype(np.uint64).view(np.int64)
    # Floor division, as event_timestamp_of(row) // 1000 does for times before 1970 too.
    at = np.maximum(events // 1000, now_ms) + table.ttl_micros // 1000
    return at.tolist()  # type: ignore[no-any-return]


def expires_at_ms(table: ViewTable, row: bytes, now_ms: int) -> int | None:
    """When a stored row may be dropped: its TTL after max(now, event time), in ms.

    Counting from the write (not only from the event) keeps rows that a historical
    materialization loads; the server still reports rows past their TTL as stale.
    """
    if table.ttl_micros is None:
        return None
    return max(now_ms, event_timestamp_of(row) // 1000) + table.ttl_micros // 1000

"""A serving process's near cache of stored rows: bounded, and never older than its store
says once an invalidation has arrived.

Entries are keyed by storage key (``ferry.stores.base.storage_key``, the name Redis
invalidates) and hold the stored row, or None for a key the store did not have. An entry
stops being served when:

* its key is invalidated (Redis client-side caching: ``CLIENT TRACKING``, see
  ``ferry.stores.redis``), or everything is flushed (the tracking connection dropped or
  reconnected: invalidations may have been lost);
* the row's event time is a view TTL old (``event + ttl <= now``): from then on the store may
  have expired the key, and only the store knows, so the key is read again. The server still
  decides PRESENT or OUTSIDE_MAX_AGE at request time from the row it is given;
* ``ttl_ms`` has passed since it was read, when the cache has a time bound (stores without
  invalidations: SQLite, DynamoDB; there a value may be up to ``ttl_ms`` old);
* it is the least recently used and the cache is over ``max_entries`` or ``max_bytes``.

The read/invalidate race: a read sent before a write may be answered with the old row after
that write's invalidation was handled (two connections, or the invalidation handled before
the reading coroutine resumes). So a read registers its keys before it is sent (``begin``),
invalidations of registered keys are noted with a sequence number, and ``finish`` caches only
the rows of keys not invalidated since their read began.

Only the event loop touches a cache: no locks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ENTRY_OVERHEAD_BYTES = 230
"""What an entry costs beyond the lengths of its key and row, for the bytes bound: 161 bytes
measured with tracemalloc over 100k entries (OrderedDict slot, tuple, float), plus 33 for
each of the two bytes objects' headers."""

MISS = object()
"""``get``'s answer for a key the cache cannot answer."""

_FOREVER = float("inf")


@dataclass(frozen=True)
class CacheLimits:
    """Bounds of a near cache.

    Attributes:
        max_entries: Most keys kept. Default 100,000.
        max_bytes: Most bytes of keys, rows and ``ENTRY_OVERHEAD_BYTES`` each. Default 64 MiB.
        ttl_ms: Most time an entry is served after it was read, in ms; None for no bound
            (only for a store that sends invalidations).
    """

    max_entries: int = 100_000
    max_bytes: int = 64 << 20
    ttl_ms: float | None = None


@dataclass
class CacheCounts:
    """What a cache has done since it was made (exported as metrics)."""

    hits: int = 0
    misses: int = 0
    invalidations: int = 0
    flushes: int = 0
    evictions: int = 0


class ReadTicket:
    """The keys of one read in flight and when it began (see ``NearCache.begin``)."""

    __slots__ = ("keys", "started")

    def __init__(self, keys: Sequence[bytes], started: int) -> None:
        self.keys = keys
        self.started = started


class NearCache:
    """Rows by storage key, LRU-bounded, dropped on invalidation (see the module doc)."""

    def __init__(self, limits: CacheLimits) -> None:
        if limits.max_entries < 1 or limits.max_bytes < 1:
            raise ValueError("a near cache needs room for at least one entry")
        if limits.ttl_ms is not None and limits.ttl_ms <= 0:
            raise ValueError("a near cache's ttl must be positive")
        self.limits = limits
        self.counts = CacheCounts()
        self.bytes = 0
        # key -> (row or None, served until this time in µs)
        self._entries: OrderedDict[bytes, tuple[bytes | None, float]] = OrderedDict()
        self._sequence = 0  # bumped by every invalidation and flush
        self._flushed_at = 0
        self._reading: dict[bytes, int] = {}  # key -> reads in flight
        self._invalidated_at: dict[bytes, int] = {}  # keys of reads in flight only

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now_us: int) -> bytes | object | None:
        """The cached row of ``key`` (None: the store had none), or ``MISS``."""
        entry = self._entries.get(key)
        if entry is None:
            self.counts.misses += 1
            return MISS
        if now_us >= entry[1]:
            self._drop(key)
            self.counts.misses += 1
            return MISS
        self._entries.move_to_end(key)
        self.counts.hits += 1
        return entry[0]

    def get_many(
        self, keys: Sequence[bytes], now_us: int
    ) -> tuple[list[bytes | object | None], list[int]]:
        """``get`` of many keys at once: the answers, and the positions of the ``MISS``es
        (one call per view of a request: a batch of 100 made 100 calls of ``get`` cost more
        than the Redis read it saved)."""
        entries = self._entries
        found = list(map(entries.get, keys))
        values: list[bytes | object | None] = []
        missing: list[int] = []
        touch = entries.move_to_end
        for index, entry in enumerate(found):
            if entry is not None and now_us < entry[1]:
                touch(keys[index])
                values.append(entry[0])
                continue
            if entry is not None and keys[index] in entries:  # a key may come twice
                self._drop(keys[index])
            missing.append(index)
            values.append(MISS)
        self.counts.hits += len(keys) - len(missing)
        self.counts.misses += len(missing)
        return values, missing

    def begin(self, keys: Sequence[bytes]) -> ReadTicket:
        """Register a read of ``keys`` about to be sent to the store."""
        reading = self._reading
        for key in keys:
            reading[key] = reading.get(key, 0) + 1
        return ReadTicket(keys, self._sequence)

    def finish(
        self,
        ticket: ReadTicket,
        rows: Sequence[bytes | None] | None,
        fresh_until_us: Sequence[float] | None = None,
        now_us: int = 0,
    ) -> None:
        """End a read: cache its ``rows`` (None: the read failed, cache nothing), except
        those of keys invalidated, or flushed, since it began.

        ``fresh_until_us``: per row, when its view TTL runs out (``event + ttl``, µs); by
        default never. ``now_us``: the time of the read, for ``ttl_ms``.
        """
        started = ticket.started
        cacheable = rows is not None and self._flushed_at <= started
        invalidated_at = self._invalidated_at
        reading = self._reading
        bound = _FOREVER if self.limits.ttl_ms is None else now_us + self.limits.ttl_ms * 1000
        for index, key in enumerate(ticket.keys):
            if cacheable and invalidated_at.get(key, -1) <= started:
                until = bound if fresh_until_us is None else min(bound, fresh_until_us[index])
                self._put(key, rows[index], until)  # type: ignore[index]
            left = reading[key] - 1
            if left:
                reading[key] = left
            else:
                del reading[key]
                invalidated_at.pop(key, None)

    def invalidate(self, keys: Iterable[bytes]) -> None:
        """Drop these keys: a writer changed them."""
        self._sequence += 1
        sequence, reading = self._sequence, self._reading
        for key in keys:
            self.counts.invalidations += 1
            if key in self._entries:
                self._drop(key)
            if key in reading:
                self._invalidated_at[key] = sequence

    def flush(self) -> None:
        """Drop everything, and cache nothing of the reads in flight: invalidations may have
        been lost (the tracking connection dropped or was replaced)."""
        self._sequence += 1
        self._flushed_at = self._sequence
        self._entries.clear()
        self.bytes = 0
        self.counts.flushes += 1

    def _put(self, key: bytes, row: bytes | None, until: float) -> None:
        if key in self._entries:
            self._drop(key)
        size = len(key) + (0 if row is None else len(row)) + ENTRY_OVERHEAD_BYTES
        if size > self.limits.max_bytes:
            return
        self._entries[key] = (row, until)
        self.bytes += size
        limits, entries = self.limits, self._entries
        while len(entries) > limits.max_entries or self.bytes > limits.max_bytes:
            oldest = next(iter(entries))
            self._drop(oldest)
            self.counts.evictions += 1

    def _drop(self, key: bytes) -> None:
        row, _ = self._entries.pop(key)
        self.bytes -= len(key) + (0 if row is None else len(row)) + ENTRY_OVERHEAD_BYTES

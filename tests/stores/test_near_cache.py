"""The near cache's own rules: bounds, expiry, invalidation and the read/invalidate race."""

from __future__ import annotations

import pytest

from ferry.stores.near_cache import ENTRY_OVERHEAD_BYTES, MISS, CacheLimits, NearCache


def cached(cache: NearCache, keys: list[bytes], rows: list[bytes | None], **kw: object) -> None:
    """One complete read of ``keys`` answered with ``rows``."""
    cache.finish(cache.begin(keys), rows, **kw)  # type: ignore[arg-type]


def test_a_read_is_cached_and_absent_keys_too() -> None:
    cache = NearCache(CacheLimits())
    assert cache.get(b"a", 0) is MISS
    cached(cache, [b"a", b"b"], [b"row", None])
    assert cache.get(b"a", 0) == b"row"
    assert cache.get(b"b", 0) is None
    assert (cache.counts.hits, cache.counts.misses) == (2, 1)


def test_an_invalidation_during_a_read_keeps_its_row_out() -> None:
    cache = NearCache(CacheLimits())
    ticket = cache.begin([b"a", b"b"])
    cache.invalidate([b"a"])  # a write landed after the store answered the read
    cache.finish(ticket, [b"old", b"row"])
    assert cache.get(b"a", 0) is MISS
    assert cache.get(b"b", 0) == b"row"
    # The mark lives only as long as the reads in flight: a later read is cached.
    cached(cache, [b"a"], [b"new"])
    assert cache.get(b"a", 0) == b"new"


def test_overlapping_reads_of_one_key_both_honour_an_invalidation() -> None:
    cache = NearCache(CacheLimits())
    first, second = cache.begin([b"a"]), cache.begin([b"a"])
    cache.invalidate([b"a"])
    cache.finish(first, [b"old"])
    cache.finish(second, [b"old"])  # began before the invalidation too
    assert cache.get(b"a", 0) is MISS
    third = cache.begin([b"a"])  # began after it: its answer is newer
    cache.finish(third, [b"new"])
    assert cache.get(b"a", 0) == b"new"


def test_an_invalidation_before_the_read_began_does_not_block_it() -> None:
    cache = NearCache(CacheLimits())
    cache.invalidate([b"a"])
    cached(cache, [b"a"], [b"row"])
    assert cache.get(b"a", 0) == b"row"


def test_a_flush_empties_the_cache_and_the_reads_in_flight() -> None:
    cache = NearCache(CacheLimits())
    cached(cache, [b"a"], [b"row"])
    ticket = cache.begin([b"b"])
    cache.flush()
    cache.finish(ticket, [b"row"])
    assert cache.get(b"a", 0) is MISS
    assert cache.get(b"b", 0) is MISS
    assert (len(cache), cache.bytes) == (0, 0)


def test_a_failed_read_caches_nothing() -> None:
    cache = NearCache(CacheLimits())
    cached(cache, [b"a"], None)  # type: ignore[arg-type]
    assert cache.get(b"a", 0) is MISS
    cached(cache, [b"a"], [b"row"])  # and leaves no mark behind
    assert cache.get(b"a", 0) == b"row"


def test_least_recently_used_entries_go_first_by_count() -> None:
    cache = NearCache(CacheLimits(max_entries=2))
    cached(cache, [b"a", b"b"], [b"1", b"2"])
    assert cache.get(b"a", 0) == b"1"  # b is now the least recently used
    cached(cache, [b"c"], [b"3"])
    assert cache.get(b"b", 0) is MISS
    assert cache.get(b"a", 0) == b"1"
    assert cache.get(b"c", 0) == b"3"
    assert cache.counts.evictions == 1


def test_the_bytes_bound_counts_keys_rows_and_overhead() -> None:
    entry = 1 + 10 + ENTRY_OVERHEAD_BYTES
    cache = NearCache(CacheLimits(max_bytes=2 * entry))
    cached(cache, [b"a", b"b"], [b"x" * 10, b"y" * 10])
    assert cache.bytes == 2 * entry
    cached(cache, [b"c"], [b"z" * 10])
    assert len(cache) == 2
    assert cache.get(b"a", 0) is MISS
    cached(cache, [b"d"], [b"w" * (3 * entry)])  # bigger than the whole cache: not kept
    assert cache.get(b"d", 0) is MISS
    assert cache.bytes == 2 * entry
    cache.invalidate([b"b", b"c"])
    assert cache.bytes == 0


def test_rows_are_read_again_once_their_view_ttl_runs_out() -> None:
    cache = NearCache(CacheLimits())
    cached(cache, [b"a"], [b"row"], fresh_until_us=[1_000])
    assert cache.get(b"a", 999) == b"row"
    assert cache.get(b"a", 1_000) is MISS
    assert len(cache) == 0


def test_many_keys_at_once_repeats_included() -> None:
    cache = NearCache(CacheLimits())
    cached(cache, [b"a", b"b", b"c"], [b"1", None, b"3"], fresh_until_us=[9, 9, 5])
    values, missing = cache.get_many([b"a", b"c", b"b", b"c", b"a", b"d"], 6)
    assert values == [b"1", MISS, None, MISS, b"1", MISS]
    assert missing == [1, 3, 5]
    assert (cache.counts.hits, cache.counts.misses) == (3, 3)
    assert len(cache) == 2  # c was past its TTL: dropped once


def test_a_time_bound_applies_from_the_read() -> None:
    cache = NearCache(CacheLimits(ttl_ms=2))
    cached(cache, [b"a", b"b"], [b"row", None], fresh_until_us=[10_000, float("inf")], now_us=0)
    assert cache.get(b"a", 1_999) == b"row"
    assert cache.get(b"a", 2_000) is MISS
    assert cache.get(b"b", 2_000) is MISS


@pytest.mark.parametrize(
    "limits", [CacheLimits(max_entries=0), CacheLimits(max_bytes=0), CacheLimits(ttl_ms=0)]
)
def test_bounds_that_hold_nothing_are_refused(limits: CacheLimits) -> None:
    with pytest.raises(ValueError, match="near cache"):
        NearCache(limits)

"""When a stored row may be dropped: the view's TTL after max(now, its event time), for one
row and for many at once (the vectorised form the Redis stores use), also before 1970."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ferry.core import Feature, RowCodec, ValueType
from ferry.stores.base import ViewTable, expires_at_ms, expiries_at_ms

CODEC = RowCodec([Feature("n", ValueType.INT64)])
DAY_US = 86_400_000_000
NOW_MS = 1_700_000_000_000


def test_the_ttl_counts_from_the_later_of_now_and_the_event() -> None:
    table = ViewTable("p", "v", 2 * DAY_US)
    old, future = CODEC.encode(0, None, [1]), CODEC.encode(NOW_MS * 1000 + DAY_US, None, [1])
    assert expires_at_ms(table, old, NOW_MS) == NOW_MS + 2 * DAY_US // 1000
    assert expires_at_ms(table, future, NOW_MS) == NOW_MS + 3 * DAY_US // 1000
    assert expires_at_ms(ViewTable("p", "v"), old, NOW_MS) is None
    assert expiries_at_ms(ViewTable("p", "v"), [old], NOW_MS) is None


@given(
    st.lists(st.integers(-(2**62), 2**62), max_size=50),
    st.integers(0, 2**40),
    st.integers(1, 10_000 * DAY_US),
)
def test_many_at_once_equal_one_at_a_time(events: list[int], now_ms: int, ttl: int) -> None:
    table = ViewTable("p", "v", ttl)
    rows = [CODEC.encode(event, None, [0]) for event in [*events, -1, -999, -1000, -1001]]
    assert expiries_at_ms(table, rows, now_ms) == [expires_at_ms(table, r, now_ms) for r in rows]

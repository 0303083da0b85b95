"""Holding a view's rows by key across batches: the conditional write's own rule."""

from __future__ import annotations

from ferry.core import Feature, RowCodec, ValueType
from ferry.materializer.newest import NewestRows

CODEC = RowCodec([Feature("n", ValueType.INT64)])


def row(event: int, created: int, value: int) -> bytes:
    return CODEC.encode(event, created, [value])


def test_the_newest_row_of_each_key_is_kept() -> None:
    held = NewestRows()
    assert held.add([(b"a", row(10, 0, 1)), (b"b", row(10, 0, 2))]) == 0
    assert held.add([(b"a", row(20, 0, 3)), (b"b", row(5, 0, 4)), (b"c", row(1, 0, 5))]) == 2
    assert held.add([(b"a", row(20, 1, 6))]) == 1  # created breaks an event-time tie
    assert len(held) == 3
    assert held.take() == [(b"a", row(20, 1, 6)), (b"b", row(10, 0, 2)), (b"c", row(1, 0, 5))]
    assert len(held) == 0
    assert held.take() == []


def test_on_equal_timestamps_the_first_row_stays() -> None:
    # As the store keeps the first of two writes with equal timestamps and one schema.
    held = NewestRows()
    held.add([(b"a", row(10, 5, 1))])
    assert held.add([(b"a", row(10, 5, 2))]) == 1
    assert held.take() == [(b"a", row(10, 5, 1))]


def test_timestamps_before_1970_compare_as_times() -> None:
    held = NewestRows()
    held.add([(b"a", row(-5, 0, 1))])
    held.add([(b"a", row(3, 0, 2))])
    held.add([(b"a", row(-9, 0, 3))])
    assert held.take() == [(b"a", row(3, 0, 2))]

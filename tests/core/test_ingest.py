"""The one ingest path (materializer and push) against an oracle written from its rule."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.core import InvalidValueError, RowCodec, decode_key, parse_repo
from ferry.core.ingest import NEWEST, ingest_rows

REPO = parse_repo(
    """
project: p
offline_store: {root: data}
entities:
  user: {join_keys: {user_id: int64}}
feature_views:
  stats:
    entities: [user]
    source: {path: stats, timestamp_field: ts, created_timestamp_field: created}
    ttl: 10s
    features: {n: int32}
""",
    "repo.yaml",
)
VIEW = REPO.view("stats")
CODEC = RowCodec(VIEW.features)
TTL = 10_000_000  # 10 s in µs

rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": st.none() | st.integers(0, 3),
            "ts": st.none() | st.integers(0, 30_000_000),
            "created": st.none() | st.integers(0, 2),
            "n": st.none() | st.integers(-5, 5),
        }
    ),
    max_size=30,
)


def table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
            "ts": pa.array([r["ts"] for r in rows], pa.int64()),
            "created": pa.array([r["created"] for r in rows], pa.int64()),
            "n": pa.array([r["n"] for r in rows], pa.int32()),
        }
    )


def oracle(rows: list[dict[str, Any]], at: int, use_ttl: bool) -> dict[int, dict[str, Any]]:
    """Per key, the row with the greatest (ts, created, input position) at or before ``at``
    (and within the TTL when asked); rows without a key or time are unplaceable."""
    best: dict[int, tuple[tuple[int, int, int], dict[str, Any]]] = {}
    for i, row in enumerate(rows):
        if row["user_id"] is None or row["ts"] is None or row["ts"] > at:
            continue
        if use_ttl and row["ts"] <= at - TTL:
            continue
        order = (row["ts"], -(2**63) if row["created"] is None else row["created"], i)
        if row["user_id"] not in best or order > best[row["user_id"]][0]:
            best[row["user_id"]] = (order, row)
    return {key: row for key, (_, row) in best.items()}


@given(rows_strategy, st.integers(0, 30_000_000), st.booleans())
def test_one_row_per_key_by_the_as_of_rule(
    rows: list[dict[str, Any]], at: int, use_ttl: bool
) -> None:
    batch = ingest_rows(table(rows), VIEW, CODEC, as_of_micros=at, use_ttl=use_ttl)
    got = {decode_key(key)[0]: CODEC.decode(row) for key, row in batch.rows}
    expected = oracle(rows, at, use_ttl)
    assert set(got) == set(expected)
    for key, row in expected.items():
        assert got[key].event_timestamp == row["ts"]
        assert got[key].created_timestamp == row["created"]
        assert got[key].values == (row["n"],)
    null_timestamp = sum(r["ts"] is None for r in rows)
    null_key = sum(r["ts"] is not None and r["user_id"] is None for r in rows)
    assert (batch.null_timestamp, batch.null_key) == (null_timestamp, null_key)
    assert batch.superseded == len(rows) - null_timestamp - null_key - len(expected)


def test_newest_keeps_rows_of_any_time_and_the_later_of_equal_ones() -> None:
    rows = [
        {"user_id": 1, "ts": 5, "created": None, "n": 1},
        {"user_id": 1, "ts": 2**62, "created": None, "n": 2},
        {"user_id": 1, "ts": 2**62, "created": None, "n": 3},
    ]
    batch = ingest_rows(table(rows), VIEW, CODEC, as_of_micros=NEWEST, use_ttl=False)
    assert [CODEC.decode(row).values for _, row in batch.rows] == [(3,)]
    assert batch.superseded == 2


def test_a_value_that_does_not_fit_names_the_callers_row() -> None:
    wide = pa.table(
        {
            "user_id": pa.array([None, 1, 2, 2], pa.int64()),
            "ts": pa.array([1, 1, 1, 2], pa.int64()),
            "created": pa.array([None] * 4, pa.int64()),
            "n": pa.array([0, 0, 0, 2**40], pa.int64()),  # int32 feature
        }
    )
    with pytest.raises(InvalidValueError) as caught:
        ingest_rows(wide, VIEW, CODEC, as_of_micros=NEWEST, use_ttl=False)
    assert str(caught.value).startswith("row 3: ")
    assert "feature 'n' (int32)" in str(caught.value)
    assert caught.value.metadata["row"] == "3"

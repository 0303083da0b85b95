"""The as-of function against a brute-force oracle written straight from the rule."""

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.core import NO_MATCH, as_of, latest_per_key

TS = pa.timestamp("us", tz="UTC")
small_times = st.integers(0, 30)


def oracle(features: list[dict], entity: dict, ttl: int | None) -> int:
    best, best_order = NO_MATCH, None
    for i, row in enumerate(features):
        if row["k1"] is None or row["k2"] is None or row["ev"] is None:
            continue
        if (row["k1"], row["k2"]) != (entity["k1"], entity["k2"]) or entity["t"] is None:
            continue
        if row["ev"] > entity["t"] or (ttl is not None and row["ev"] <= entity["t"] - ttl):
            continue
        created = row["cr"] if row["cr"] is not None else -(2**63)
        order = (row["ev"], created, i)  # ties: the later input row wins
        if best_order is None or order > best_order:
            best, best_order = i, order
    return best


feature_rows = st.lists(
    st.fixed_dictionaries(
        {
            "k1": st.none() | st.integers(0, 3),
            "k2": st.sampled_from(["a", "b"]),
            "ev": st.none() | small_times,
            "cr": st.none() | st.integers(0, 3),
        }
    ),
    max_size=40,
)
entity_rows = st.lists(
    st.fixed_dictionaries(
        {
            "k1": st.none() | st.integers(0, 4),
            "k2": st.sampled_from(["a", "b", "c"]),
            "t": st.none() | small_times,
        }
    ),
    max_size=20,
)


def table(rows: list[dict], time_columns: tuple[str, ...]) -> pa.Table:
    columns = {
        "k1": pa.array([r["k1"] for r in rows], pa.int64()),
        "k2": pa.array([r["k2"] for r in rows], pa.string()),
    }
    for name in time_columns:
        columns[name] = pa.array([r[name] for r in rows], TS)
    return pa.table(columns)


@settings(max_examples=300)
@given(feature_rows, entity_rows, st.none() | st.integers(1, 10))
def test_as_of_matches_the_oracle(
    features: list[dict], entities: list[dict], ttl: int | None
) -> None:
    got = as_of(
        table(features, ("ev", "cr")),
        table(entities, ("t",)),
        ["k1", "k2"],
        event_timestamp="ev",
        created_timestamp="cr",
        entity_timestamp="t",
        ttl_micros=ttl,
    )
    assert got.tolist() == [oracle(features, e, ttl) for e in entities]


@given(feature_rows, small_times, st.none() | st.integers(1, 10))
def test_latest_per_key_is_as_of_for_each_distinct_key(
    features: list[dict], at: int, ttl: int | None
) -> None:
    got = latest_per_key(
        table(features, ("ev", "cr")),
        ["k1", "k2"],
        at_micros=at,
        event_timestamp="ev",
        created_timestamp="cr",
        ttl_micros=ttl,
    )
    keys = {(r["k1"], r["k2"]) for r in features if r["k1"] is not None}
    expected = {oracle(features, {"k1": k1, "k2": k2, "t": at}, ttl) for k1, k2 in keys}
    assert got.tolist() == sorted(expected - {NO_MATCH})


def test_without_created_timestamp_and_int_times() -> None:
    features = pa.table({"k": [1, 1, 2], "ev": [5, 9, 1]})
    entities = pa.table({"k": pa.array([1, 1, 2, 3], pa.int32()), "t": [8, 9, 0, 9]})
    got = as_of(
        features,
        entities,
        ["k"],
        event_timestamp="ev",
        created_timestamp=None,
        entity_timestamp="t",
        ttl_micros=None,
    )
    assert got.tolist() == [0, 1, NO_MATCH, NO_MATCH]


def test_ttl_edge_is_exclusive() -> None:
    features = pa.table({"k": [1], "ev": [10]})
    entities = pa.table({"k": [1, 1, 1], "t": [14, 15, 10]})
    got = as_of(
        features,
        entities,
        ["k"],
        event_timestamp="ev",
        created_timestamp=None,
        entity_timestamp="t",
        ttl_micros=5,
    )
    # event > t - ttl: 10 > 9 matches, 10 > 10 does not; event <= t: 10 <= 10 matches.
    assert got.tolist() == [0, NO_MATCH, 0]


def test_empty_inputs() -> None:
    empty = pa.table({"k": pa.array([], pa.int64()), "ev": pa.array([], pa.int64())})
    entities = pa.table({"k": [1], "t": [1]})
    assert as_of(
        empty,
        entities,
        ["k"],
        event_timestamp="ev",
        created_timestamp=None,
        entity_timestamp="t",
        ttl_micros=None,
    ).tolist() == [NO_MATCH]
    assert (
        as_of(
            empty,
            entities.slice(0, 0),
            ["k"],
            event_timestamp="ev",
            created_timestamp=None,
            entity_timestamp="t",
            ttl_micros=None,
        ).dtype
        == np.int64
    )

"""The all-at-once table encoder gives exactly the bytes of the row-by-row encoder, for every
type with nulls, over chunked and sliced tables; and declines (to the row-by-row encoder and
its errors) whatever it does not cover."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.core import Feature, InvalidValueError, RowCodec, ValueType
from ferry.core.codec import NO_CREATED_TIMESTAMP, VERSION
from ferry.core.codec_table import encode_rows
from tests.core.test_codec import VALUES

COVERED = [Feature(f"f_{t.name.lower()}", t) for t in ValueType if t is not ValueType.STRING_LIST]


def table_of(
    features: list[Feature], rows: list[tuple[int, int | None, list[Any]]], as_timestamps: bool
) -> pa.Table:
    time_type = pa.timestamp("us", tz="UTC") if as_timestamps else pa.int64()
    columns = {
        "event_timestamp": pa.array([r[0] for r in rows], time_type),
        "created_timestamp": pa.array([r[1] for r in rows], time_type),
    }
    for i, feature in enumerate(features):
        columns[feature.name] = pa.array([r[2][i] for r in rows], feature.type.arrow_type)
    return pa.table(columns)


def one_by_one(codec: RowCodec, rows: list[tuple[int, int | None, list[Any]]]) -> list[bytes]:
    return [codec.encode(event, created, values) for event, created, values in rows]


micros = st.integers(-(2**62), 2**62)  # within what an Arrow µs timestamp holds


@st.composite
def row_lists(draw: st.DrawFn, features: list[Feature]) -> list[tuple[int, int | None, list[Any]]]:
    count = draw(st.integers(1, 12))
    return [
        (
            draw(micros),
            draw(st.none() | micros),
            [draw(st.none() | VALUES[f.type]) for f in features],
        )
        for _ in range(count)
    ]


@given(row_lists(COVERED), st.booleans(), st.integers(0, 3))
def test_the_same_bytes_as_row_by_row(
    rows: list[tuple[int, int | None, list[Any]]], as_timestamps: bool, cut: int
) -> None:
    codec = RowCodec(COVERED)
    table = table_of(COVERED, rows, as_timestamps)
    # In two chunks and sliced: offsets into shared buffers must be honoured.
    cut = min(cut, len(rows))
    table = pa.concat_tables([table.slice(0, cut), table.slice(cut)])
    assert table.num_rows == len(rows)
    at_once = encode_rows(
        table,
        [f.name for f in COVERED],
        [f.type for f in COVERED],
        VERSION,
        codec._static,
        "event_timestamp",
        "created_timestamp",
        NO_CREATED_TIMESTAMP,
    )
    assert at_once is not None, "the covered types were declined"
    assert at_once == one_by_one(codec, rows)
    assert codec.encode_table(table, "event_timestamp", "created_timestamp") == at_once
    if len(rows) > 1:
        tail = table.slice(1)
        assert codec.encode_table(tail, "event_timestamp", "created_timestamp") == at_once[1:]


def test_no_created_timestamp_field() -> None:
    features = [Feature("n", ValueType.INT64), Feature("s", ValueType.STRING)]
    codec = RowCodec(features)
    table = pa.table({"ts": pa.array([5, 6], pa.int64()), "n": [1, None], "s": ["a", None]})
    assert codec.encode_table(table, "ts", None) == [
        codec.encode(5, None, [1, "a"]),
        codec.encode(6, None, [None, None]),
    ]


def test_nan_and_negative_zero_keep_their_bits() -> None:
    codec = RowCodec([Feature("d", ValueType.DOUBLE), Feature("l", ValueType.FLOAT_LIST)])
    table = pa.table(
        {
            "ts": pa.array([1, 2], pa.int64()),
            "d": [float("nan"), -0.0],
            "l": pa.array([[float("inf")], [-0.0, float("nan")]], pa.list_(pa.float32())),
        }
    )
    decoded = [codec.decode(r).values for r in codec.encode_table(table, "ts", None)]
    assert str(decoded) == str([(float("nan"), [float("inf")]), (-0.0, [-0.0, float("nan")])])


@pytest.mark.parametrize(
    ("kind", "column", "message"),
    [
        # An int64 column for an INT32 feature: row by row, with a range check.
        (ValueType.INT32, pa.array([1, 2**40], pa.int64()), "row 1"),
        # A null inside a list.
        (ValueType.INT64_LIST, pa.array([[1], [2, None]], pa.list_(pa.int64())), "row 1"),
    ],
)
def test_what_it_does_not_cover_goes_row_by_row_and_is_named(
    kind: ValueType, column: pa.Array, message: str
) -> None:
    codec = RowCodec([Feature("x", kind)])
    table = pa.table({"ts": pa.array([1, 2], pa.int64()), "x": column})
    assert encode_rows(table, ["x"], [kind], VERSION, codec._static, "ts", None, 0) is None
    with pytest.raises(InvalidValueError, match=message):
        codec.encode_table(table, "ts", None)


def test_string_lists_go_row_by_row() -> None:
    codec = RowCodec([Feature("x", ValueType.STRING_LIST)])
    table = pa.table({"ts": pa.array([1, 2], pa.int64()), "x": [["a", "b"], None]})
    assert (
        encode_rows(table, ["x"], [ValueType.STRING_LIST], VERSION, codec._static, "ts", None, 0)
        is None
    )
    assert codec.encode_table(table, "ts", None) == one_by_one(
        codec, [(1, None, [["a", "b"]]), (2, None, [None])]
    )

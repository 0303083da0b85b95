import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.core import Feature, InvalidValueError, RowCodec, ValueType
from ferry.core.codec import fingerprint_of, timestamp_prefix

int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
int32s = st.integers(min_value=-(2**31), max_value=2**31 - 1)
doubles = st.floats(allow_nan=False)
floats32 = st.floats(width=32, allow_nan=False)

VALUES: dict[ValueType, st.SearchStrategy[Any]] = {
    ValueType.INT64: int64s,
    ValueType.INT32: int32s,
    ValueType.DOUBLE: doubles,
    ValueType.FLOAT: floats32,
    ValueType.BOOL: st.booleans(),
    ValueType.STRING: st.text(),
    ValueType.BYTES: st.binary(),
    ValueType.TIMESTAMP: int64s,
    ValueType.INT64_LIST: st.lists(int64s, max_size=5),
    ValueType.INT32_LIST: st.lists(int32s, max_size=5),
    ValueType.DOUBLE_LIST: st.lists(doubles, max_size=5),
    ValueType.FLOAT_LIST: st.lists(floats32, max_size=5),
    ValueType.STRING_LIST: st.lists(st.text(), max_size=5),
}
ALL_FEATURES = [Feature(f"f_{t.name.lower()}", t) for t in ValueType]


@st.composite
def rows(draw: st.DrawFn) -> tuple[int, int | None, list[Any]]:
    values = [draw(st.none() | VALUES[f.type]) for f in ALL_FEATURES]
    # INT64_MIN is the codec's "no created timestamp" marker, not a real instant.
    return draw(int64s), draw(st.none() | st.integers(-(2**63) + 1, 2**63 - 1)), values


@given(rows())
def test_round_trip_of_every_type_including_nulls(row: tuple[int, int | None, list[Any]]) -> None:
    codec = RowCodec(ALL_FEATURES)
    event, created, values = row
    decoded = codec.decode(codec.encode(event, created, values))
    assert decoded.event_timestamp == event
    assert decoded.created_timestamp == created
    assert list(decoded.values) == values


@given(int64s, int64s, int64s, int64s)
def test_timestamp_prefix_orders_like_the_timestamp_pair(
    e1: int, c1: int, e2: int, c2: int
) -> None:
    codec = RowCodec([Feature("x", ValueType.INT64)])
    a = timestamp_prefix(codec.encode(e1, c1, [1]))
    b = timestamp_prefix(codec.encode(e2, c2, [1]))
    assert (a < b) == ((e1, c1) < (e2, c2))
    assert (a == b) == ((e1, c1) == (e2, c2))


def test_missing_created_timestamp_sorts_below_any_real_one() -> None:
    codec = RowCodec([Feature("x", ValueType.INT64)])
    assert timestamp_prefix(codec.encode(5, None, [1])) < timestamp_prefix(codec.encode(5, 0, [1]))


def test_rows_written_before_a_schema_change_stay_readable() -> None:
    old = RowCodec(
        [
            Feature("a", ValueType.INT64),
            Feature("gone", ValueType.STRING),
            Feature("b", ValueType.DOUBLE),
            Feature("retyped", ValueType.INT32),
        ]
    )
    row = old.encode(10, 11, [1, "bye", 2.5, 7])
    new = RowCodec(
        [
            Feature("b", ValueType.DOUBLE),
            Feature("added", ValueType.FLOAT_LIST),
            Feature("a", ValueType.INT64),
            Feature("retyped", ValueType.INT64),
        ]
    )
    decoded = new.decode(row)
    assert decoded.values == (2.5, None, 1, None)
    assert (decoded.event_timestamp, decoded.created_timestamp) == (10, 11)
    assert fingerprint_of(row) == old.fingerprint != new.fingerprint


def test_fingerprint_depends_on_names_types_and_order() -> None:
    a, b = Feature("a", ValueType.INT64), Feature("b", ValueType.INT64)
    prints = {
        RowCodec([a, b]).fingerprint,
        RowCodec([b, a]).fingerprint,
        RowCodec([a, Feature("b", ValueType.INT32)]).fingerprint,
    }
    assert len(prints) == 3
    assert RowCodec([a, b]).fingerprint == RowCodec([a, b]).fingerprint


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (ValueType.INT32, 2**31),
        (ValueType.INT64, "7"),
        (ValueType.STRING, 5),
        (ValueType.FLOAT_LIST, [1.0, None]),
        (ValueType.BYTES, "text"),
    ],
)
def test_values_that_do_not_fit_name_the_feature(kind: ValueType, value: Any) -> None:
    codec = RowCodec([Feature("ok", ValueType.INT64), Feature("bad", kind)])
    with pytest.raises(InvalidValueError, match="'bad'"):
        codec.encode(1, 1, [1, value])


def test_wrong_value_count_is_an_error() -> None:
    with pytest.raises(InvalidValueError, match="expected 1 values, got 2"):
        RowCodec([Feature("x", ValueType.INT64)]).encode(1, 1, [1, 2])


def test_rejects_bytes_that_are_not_a_row() -> None:
    with pytest.raises(InvalidValueError, match="not a Ferry row"):
        RowCodec([Feature("x", ValueType.INT64)]).decode(b"\x09" + bytes(30))


def test_row_is_compact() -> None:
    codec = RowCodec([Feature("n", ValueType.INT64), Feature("s", ValueType.STRING)])
    row = codec.encode(1, 2, [3, "US"])
    # 23 header + 2*5 descriptors + 1 bitmap + 8 int + 4+2 string
    assert len(row) == 23 + 10 + 1 + 8 + 6
    assert struct.unpack_from(">H", row, 21) == (2,)

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.core import Feature, InvalidValueError, RowCodec, ValueType
from ferry.core.codec import LEGACY_VERSION, VERSION, fingerprint_of, timestamp_prefix
from ferry.core.errors import UnknownSchemaError

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
    ValueType.STRING: st.text() | st.text(min_size=130, max_size=200),
    # Payloads at the edges of a 1-, 2- and 3-byte varint length.
    ValueType.BYTES: st.binary()
    | st.builds(
        bytes.__mul__,
        st.binary(min_size=1, max_size=1),
        st.sampled_from([127, 128, 16383, 16384, 40000]),
    ),
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


def test_rows_written_before_a_schema_change_stay_readable_once_it_is_learnt() -> None:
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
    with pytest.raises(UnknownSchemaError) as unknown:
        new.decode(row)
    assert unknown.value.fingerprint == old.fingerprint
    with pytest.raises(UnknownSchemaError):
        new.decode_block([row])
    assert new.learn(old.descriptors) == old.fingerprint
    decoded = new.decode(row)
    assert decoded.values == (2.5, None, 1, None)
    assert (decoded.event_timestamp, decoded.created_timestamp) == (10, 11)
    assert fingerprint_of(row) == old.fingerprint != new.fingerprint
    block = new.decode_block([row, None])
    assert block.present.tolist() == [True, False]
    assert block.fixed[0].tolist() == [2.5, 0.0]
    assert block.fixed[2].tolist() == [1, 0]
    assert block.nulls.tolist() == [[False, True, False, True], [True] * 4]


def test_a_schema_learnt_that_is_not_a_descriptor_list_is_refused() -> None:
    codec = RowCodec([Feature("a", ValueType.INT64)])
    with pytest.raises(InvalidValueError, match="not a field descriptor list"):
        codec.learn(b"\x00" * 7)
    with pytest.raises(InvalidValueError, match="unknown type code 99"):
        codec.learn(b"\x00\x00\x00\x01\x63")


GOLDEN_V1 = json.loads((Path(__file__).parent / "data" / "v1_rows.json").read_text())


@pytest.mark.parametrize("case", GOLDEN_V1["rows"], ids=lambda case: case["hex"][:8])
def test_version_1_rows_written_before_version_2_still_decode(case: dict[str, Any]) -> None:
    # Rows written by the version-1 codec (tests/core/data/v1_rows.json, made with it):
    # self-describing, so a reader decodes them without learning their schema.
    features = [Feature(name, ValueType(kind)) for name, kind in GOLDEN_V1["features"]]
    row = bytes.fromhex(case["hex"])
    assert row[0] == LEGACY_VERSION
    expected = [
        bytes.fromhex(v) if f.type is ValueType.BYTES and v is not None else v
        for f, v in zip(features, case["values"], strict=True)
    ]
    for reader in (features, [*reversed(features), Feature("new", ValueType.INT64)]):
        codec = RowCodec(reader)
        decoded = codec.decode(row)
        by_name = dict(zip([f.name for f in reader], decoded.values, strict=True))
        assert [by_name[f.name] for f in features] == expected
        assert (decoded.event_timestamp, decoded.created_timestamp) == (
            case["event"],
            case["created"],
        )
        # Through decode_block, a version-1 row is re-encoded as version 2 first.
        block = codec.decode_block([row])
        assert block.event_timestamps.tolist() == [case["event"]]
        assert block.nulls[0].tolist() == [v is None for v in decoded.values]
    assert fingerprint_of(row) == RowCodec(features).fingerprint


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
    # 21 header + 1 bitmap + 8 int + 1+2 string
    assert len(row) == 21 + 1 + 8 + 3
    assert row[0] == VERSION == 2
    assert struct.unpack_from(">I", row, 17) == (codec.fingerprint,)
    assert codec.encode(1, 2, [3, "x" * 200])[30:32] == bytes([200 & 0x7F | 0x80, 200 >> 7])

"""Typed API columns (``ferry.api.types.v1.Column``) to and from Python values.

Shared by the server and the client, so both sides agree on every type's representation:
scalars are packed repeated fields, timestamps µs ints, lists a flat value array plus one
length per row. Rows without a value carry the type's zero value on the wire; which rows
those are travels separately (statuses in responses, null indexes in pushes).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import Any

from ferry.api.types.v1 import types_pb2
from ferry.core.errors import InvalidValueError
from ferry.core.types import ValueType

FIELD_OF: dict[ValueType, str] = {
    ValueType.INT64: "int64_values",
    ValueType.INT32: "int32_values",
    ValueType.DOUBLE: "double_values",
    ValueType.FLOAT: "float_values",
    ValueType.BOOL: "bool_values",
    ValueType.STRING: "string_values",
    ValueType.BYTES: "bytes_values",
    ValueType.TIMESTAMP: "timestamp_values",
    ValueType.INT64_LIST: "int64_list_values",
    ValueType.INT32_LIST: "int32_list_values",
    ValueType.DOUBLE_LIST: "double_list_values",
    ValueType.FLOAT_LIST: "float_list_values",
    ValueType.STRING_LIST: "string_list_values",
}
TYPE_OF_FIELD = {field: kind for kind, field in FIELD_OF.items()}
PROTO_TYPE: dict[ValueType, types_pb2.ValueType.ValueType] = {
    kind: types_pb2.ValueType.Value("VALUE_TYPE_" + kind.name) for kind in ValueType
}
ZERO_VALUES: dict[ValueType, Any] = {
    # What a row without a value carries on the wire, per scalar type.
    ValueType.INT64: 0,
    ValueType.INT32: 0,
    ValueType.DOUBLE: 0.0,
    ValueType.FLOAT: 0.0,
    ValueType.BOOL: False,
    ValueType.STRING: "",
    ValueType.BYTES: b"",
    ValueType.TIMESTAMP: 0,
}


def fill_column(column: types_pb2.Column, kind: ValueType, values: Sequence[Any]) -> None:
    """Write ``values`` into an empty ``column`` as ``kind``; None becomes the zero value."""
    target = getattr(column, FIELD_OF[kind])
    if kind.element is None:
        zero = ZERO_VALUES[kind]
        filled = [zero if v is None else v for v in values]
        (target.micros if kind is ValueType.TIMESTAMP else target.values).extend(filled)
        return
    lengths = [0 if v is None else len(v) for v in values]
    target.lengths.extend(lengths)
    target.values.extend(item for v in values if v for item in v)
    if not values:
        target.SetInParent()


def column_type(column: types_pb2.Column) -> ValueType | None:
    """The type a column carries, or None when no member is set."""
    field = column.WhichOneof("values")
    return None if field is None else TYPE_OF_FIELD[field]


def column_values(column: types_pb2.Column) -> list[Any]:
    """The Python values of a column, one per row (lists for list types).

    Raises:
        InvalidValueError: a list column whose lengths do not add up to its values.
    """
    kind = column_type(column)
    if kind is None:
        return []
    source = getattr(column, FIELD_OF[kind])
    if kind is ValueType.TIMESTAMP:
        return list(source.micros)
    if kind.element is None:
        return list(source.values)
    flat = list(source.values)
    ends = list(accumulate(source.lengths))
    if (ends[-1] if ends else 0) != len(flat):
        # Row i holds the next lengths[i] values: any other total is a malformed column,
        # which slicing would silently truncate or pad.
        raise InvalidValueError(
            f"a {kind.value} column's lengths add up to {ends[-1] if ends else 0}, but it "
            f"holds {len(flat)} values",
            reason="RAGGED_LIST_COLUMN",
            lengths_total=ends[-1] if ends else 0,
            values=len(flat),
        )
    starts = [0, *ends[:-1]]
    return [flat[a:b] for a, b in zip(starts, ends, strict=True)]


def column_length(column: types_pb2.Column) -> int:
    """The number of rows of a column."""
    kind = column_type(column)
    if kind is None:
        return 0
    source = getattr(column, FIELD_OF[kind])
    if kind is ValueType.TIMESTAMP:
        return len(source.micros)
    return len(source.lengths) if kind.element is not None else len(source.values)

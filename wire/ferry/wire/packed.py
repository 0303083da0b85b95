"""Response columns written straight to protobuf wire bytes from numpy arrays.

Building a 100-row x 9-feature response as protobuf objects (a list per column, a
conversion per value) costs more than the store lookup. The wire format of our columns is
simple enough to write directly: packed doubles, floats and bools are the arrays' own
little-endian bytes, packed integers are varints (encoded here for a whole array at once),
strings and list elements are the stored UTF-8 / element bytes with a length prefix. Field
numbers come from the message descriptors, so a proto change cannot silently desync this
module; tests parse its output with the generated classes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferry.api.types.v1 import types_pb2
from ferry.core import speedups
from ferry.core.codec import ListColumn
from ferry.core.speedups import varint
from ferry.core.types import ValueType
from ferry.wire.columns import FIELD_OF, PROTO_TYPE, ZERO_VALUES

_LEN = 2  # wire type of length-delimited fields
_VARINT = 0

_COLUMN = types_pb2.Column.DESCRIPTOR
_FEATURE_COLUMN = types_pb2.FeatureColumn.DESCRIPTOR


def _key(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def field_number(descriptor: Any, name: str) -> int:
    """The number of field ``name`` of a message descriptor."""
    return int(descriptor.fields_by_name[name].number)


_NAME = _key(field_number(_FEATURE_COLUMN, "name"), _LEN)
_TYPE = _key(field_number(_FEATURE_COLUMN, "type"), _VARINT)
_VALUES = _key(field_number(_FEATURE_COLUMN, "values"), _LEN)
_STATUSES = _key(field_number(_FEATURE_COLUMN, "statuses"), _LEN)
_TIMESTAMPS = _key(field_number(_FEATURE_COLUMN, "event_timestamp_micros"), _LEN)
_COLUMN_MEMBER = {
    kind: _key(field_number(_COLUMN, field), _LEN) for kind, field in FIELD_OF.items()
}
# Inside every *Values message: the values (or micros) are field 1, list lengths field 2.
_ELEMENTS = _key(1, _LEN)
_LENGTHS = _key(2, _LEN)
_RAW_ELEMENT_TYPES = {
    ValueType.DOUBLE: "<f8",
    ValueType.FLOAT: "<f4",
    ValueType.BOOL: "u1",
}
_STRUCT_CODES = {ValueType.DOUBLE: "d", ValueType.FLOAT: "f", ValueType.BOOL: "?"}


def varints(values: np.ndarray[Any, Any] | Sequence[int]) -> bytes:
    """Varints of a whole integer array, concatenated (what a packed int field holds);
    signed values sign-extended to 64 bits, as protobuf encodes int32 and int64
    (``ferry.core.speedups``: compiled where built)."""
    if isinstance(values, np.ndarray) and speedups.varints is not speedups.py_varints:
        values = np.ascontiguousarray(values, np.int64)  # the compiled one takes int64s
    return speedups.varints(values)


def field(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: key, length, payload."""
    return key + varint(len(payload)) + payload


def packed(key: bytes, payload: bytes) -> bytes:
    """A packed repeated field; absent when empty (proto3 writes nothing for no elements)."""
    return field(key, payload) if payload else b""


class ColumnEncoder:
    """Writes the ``FeatureColumn`` of one feature of a plan; its name, type and how to
    write its values are settled once, not per request."""

    def __init__(self, name: str, kind: ValueType) -> None:
        self._head = field(_NAME, name.encode("utf-8")) + _TYPE + varint(PROTO_TYPE[kind])
        self._member = _COLUMN_MEMBER[kind]
        self._values = _values_writer(kind)

    def encode(self, values: Any, statuses: bytes, timestamps: bytes) -> bytes:
        """The column's message.

        Args:
            values: Zero where a row has no value: for fixed-width types a numpy array or a
                list, for strings and bytes raw bytes per row (UTF-8 for strings), for lists
                a ``ListColumn`` (see ``small_column`` for lists of Python values).
            statuses: The packed statuses: one byte per row (every status is < 128).
            timestamps: The event timestamps field, from ``timestamps_field``.
        """
        column = field(self._member, self._values(values))
        return self._head + field(_VALUES, column) + packed(_STATUSES, statuses) + timestamps


def _values_writer(kind: ValueType) -> Callable[[Any], bytes]:
    """The body of the ``*Values`` message of a type, chosen once per column."""
    if kind in (ValueType.STRING, ValueType.BYTES):
        return _byte_strings
    element = kind.element
    if element is None:
        write = _elements_writer(kind)
        return lambda values: packed(_ELEMENTS, write(values))
    if element is ValueType.STRING:
        return lambda column: (
            _byte_strings(column.values) + packed(_LENGTHS, varints(column.lengths))
        )
    write = _elements_writer(element)
    return lambda column: (
        packed(_ELEMENTS, write(column.values)) + packed(_LENGTHS, varints(column.lengths))
    )


def _elements_writer(kind: ValueType) -> Callable[[Any], bytes]:
    """Packed elements of a scalar type: raw little-endian bytes or varints."""
    raw = _RAW_ELEMENT_TYPES.get(kind)
    if raw is None:
        return varints
    code = _STRUCT_CODES[kind]

    def write(values: Any) -> bytes:
        if isinstance(values, np.ndarray):
            return bytes(values.astype(raw, copy=False).tobytes())
        return struct.pack(f"<{len(values)}{code}", *values)

    return write


def small_column(kind: ValueType, cells: Sequence[Any]) -> Any:
    """The ``values`` argument of ``ColumnEncoder.encode`` from Python values (None where
    a row has none): for a few rows, cheaper than arrays."""
    if kind.element is None:
        if kind is ValueType.STRING:
            return [b"" if v is None else v.encode("utf-8") for v in cells]
        zero = ZERO_VALUES[kind]
        return [zero if v is None else v for v in cells]
    flat = [item for v in cells if v for item in v]
    if kind is ValueType.STRING_LIST:
        flat = [s.encode("utf-8") for s in flat]
    return ListColumn(flat, [0 if v is None else len(v) for v in cells])


def _byte_strings(values: list[bytes]) -> bytes:
    """A repeated string/bytes field 1: each element tagged and length-prefixed."""
    return speedups.byte_strings(_ELEMENTS, values)


def timestamps_field(micros: np.ndarray[Any, np.dtype[np.int64]] | Sequence[int]) -> bytes:
    """The event-timestamps field of a ``FeatureColumn`` (shared by a view's features)."""
    return packed(_TIMESTAMPS, varints(micros))


def repeated_message(number: int, messages: list[bytes]) -> bytes:
    """A repeated message field of a response: each message tagged and length-prefixed."""
    key = _key(number, _LEN)
    return b"".join([field(key, m) for m in messages])


def int_field(number: int, value: int) -> bytes:
    """A singular int64 field (absent when zero, as proto3 writes it)."""
    return _key(number, _VARINT) + varint(value) if value else b""


def message_field(number: int, message: bytes) -> bytes:
    """A singular message field."""
    return field(_key(number, _LEN), message)

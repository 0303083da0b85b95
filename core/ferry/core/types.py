"""Value types of features and join keys, and how they map to Arrow types."""

from __future__ import annotations

import enum

import pyarrow as pa


class ValueType(enum.Enum):
    """A feature or join-key type, named as in the feature repo file."""

    INT64 = "int64"
    INT32 = "int32"
    DOUBLE = "double"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    BYTES = "bytes"
    TIMESTAMP = "timestamp"
    INT64_LIST = "list<int64>"
    INT32_LIST = "list<int32>"
    DOUBLE_LIST = "list<double>"
    FLOAT_LIST = "list<float>"
    STRING_LIST = "list<string>"

    @property
    def element(self) -> ValueType | None:
        """The element type of a list type, None for a scalar type."""
        return _ELEMENT.get(self)

    @property
    def arrow_type(self) -> pa.DataType:
        """The canonical Arrow type values of this type are normalised to."""
        element = self.element
        if element is not None:
            return pa.list_(element.arrow_type)
        return _ARROW[self]

    def accepts(self, arrow_type: pa.DataType) -> bool:
        """Whether a source column of ``arrow_type`` holds values of this type exactly."""
        element = self.element
        if element is not None:
            is_list = (
                pa.types.is_list(arrow_type)
                or pa.types.is_large_list(arrow_type)
                or pa.types.is_fixed_size_list(arrow_type)
            )
            return is_list and element.accepts(arrow_type.value_type)
        if self is ValueType.TIMESTAMP:
            return bool(pa.types.is_timestamp(arrow_type))
        if self is ValueType.STRING:
            return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))
        if self is ValueType.BYTES:
            return bool(pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type))
        return bool(arrow_type == _ARROW[self])


_ARROW: dict[ValueType, pa.DataType] = {
    ValueType.INT64: pa.int64(),
    ValueType.INT32: pa.int32(),
    ValueType.DOUBLE: pa.float64(),
    ValueType.FLOAT: pa.float32(),
    ValueType.BOOL: pa.bool_(),
    ValueType.STRING: pa.string(),
    ValueType.BYTES: pa.binary(),
    ValueType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
}

_ELEMENT: dict[ValueType, ValueType] = {
    ValueType.INT64_LIST: ValueType.INT64,
    ValueType.INT32_LIST: ValueType.INT32,
    ValueType.DOUBLE_LIST: ValueType.DOUBLE,
    ValueType.FLOAT_LIST: ValueType.FLOAT,
    ValueType.STRING_LIST: ValueType.STRING,
}

JOIN_KEY_TYPES = frozenset({ValueType.INT64, ValueType.INT32, ValueType.STRING})
"""Types a join key may have: the entity-key encoding covers integers and strings."""

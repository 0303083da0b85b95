"""Conversions between API messages and Python values, shared by server and client."""

from ferry.wire.columns import (
    FIELD_OF,
    PROTO_TYPE,
    column_length,
    column_type,
    column_values,
    fill_column,
)

__all__ = [
    "FIELD_OF",
    "PROTO_TYPE",
    "column_length",
    "column_type",
    "column_values",
    "fill_column",
]

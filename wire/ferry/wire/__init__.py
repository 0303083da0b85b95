"""The wire format, shared by server and client: API columns to and from Python values
(``columns``), feature columns written as bytes (``packed``) and the lookup responses framed
from them (``responses``)."""

from ferry.wire.columns import (
    FIELD_OF,
    PROTO_TYPE,
    column_length,
    column_type,
    column_values,
    fill_column,
)
from ferry.wire.responses import (
    model_features_response,
    online_features_response,
    stream_error_response,
    stream_features_response,
)

__all__ = [
    "FIELD_OF",
    "PROTO_TYPE",
    "column_length",
    "column_type",
    "column_values",
    "fill_column",
    "model_features_response",
    "online_features_response",
    "stream_error_response",
    "stream_features_response",
]

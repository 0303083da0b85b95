"""Building requests from Python values: shared by the sync and the async client."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import pyarrow as pa

from ferry.api.registry.v1 import registry_pb2
from ferry.api.serving.v1 import serving_pb2
from ferry.api.types.v1 import types_pb2
from ferry.core.errors import InvalidValueError
from ferry.core.timestamps import datetime_to_micros
from ferry.core.types import ValueType
from ferry.wire.columns import FIELD_OF, fill_column

Columns: TypeAlias = Mapping[str, Sequence[Any]] | pa.Table


def online_features_request(
    features: Sequence[str] | None, feature_service: str | None, entities: Columns
) -> serving_pb2.GetOnlineFeaturesRequest:
    """A GetOnlineFeatures request.

    Raises:
        InvalidValueError: neither or both of ``features`` and ``feature_service``, or an
            entity column whose type cannot be told.
    """
    if (features is None) == (feature_service is None):
        raise InvalidValueError("pass exactly one of features= and feature_service=")
    request = serving_pb2.GetOnlineFeaturesRequest()
    if feature_service is not None:
        request.feature_service = feature_service
    else:
        request.refs.refs.extend(features or [])
    _fill_entities(request.entities, entities)
    return request


def model_features_request(
    model: str, selector: registry_pb2.ModelSelector, entities: Columns
) -> serving_pb2.GetModelFeaturesRequest:
    """A GetModelFeatures request."""
    request = serving_pb2.GetModelFeaturesRequest(model_name=model, selector=selector)
    _fill_entities(request.entities, entities)
    return request


def _fill_entities(target: MutableMapping[str, types_pb2.Column], entities: Columns) -> None:
    for name, (kind, values, _) in typed_columns(entities).items():
        fill_column(target[name], kind, values)


def push_request(
    view: str, rows: Columns | Sequence[Mapping[str, Any]]
) -> serving_pb2.PushFeaturesRequest:
    """A PushFeatures request from columns, a pyarrow Table, or a list of row dicts."""
    if isinstance(rows, Sequence) and not isinstance(rows, pa.Table):
        names = list(dict.fromkeys(name for row in rows for name in row))
        rows = {name: [row.get(name) for row in rows] for name in names}
    request = serving_pb2.PushFeaturesRequest(view=view)
    for name, (kind, values, nulls) in typed_columns(rows).items():
        fill_column(request.columns[name], kind, values)
        if nulls:
            request.null_rows[name].indexes.extend(nulls)
    return request


def typed_columns(columns: Columns) -> dict[str, tuple[ValueType, list[Any], list[int]]]:
    """Each column's wire type, values (timestamps as µs) and null row indexes."""
    out = {}
    if isinstance(columns, pa.Table):
        for name in columns.column_names:
            kind = _arrow_kind(name, columns.schema.field(name).type)
            column = columns[name]
            if kind is ValueType.TIMESTAMP:
                column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
            values = column.to_pylist()
            out[name] = (kind, values, [i for i, v in enumerate(values) if v is None])
        return out
    for name, raw in columns.items():
        values = [datetime_to_micros(v) if isinstance(v, datetime) else v for v in raw]
        # An empty column has no type to tell; any will do, the server sees zero rows.
        kind = _python_kind(name, [v for v in raw if v is not None]) if raw else ValueType.INT64
        out[name] = (kind, values, [i for i, v in enumerate(values) if v is None])
    return out


def _python_kind(name: str, values: list[Any]) -> ValueType:
    """The wire type of Python values: int -> int64, float -> double, and so on."""
    kinds = {_scalar_kind(v) if not isinstance(v, list | tuple) else _list_kind(v) for v in values}
    kinds.discard(None)
    if kinds == {ValueType.INT64, ValueType.DOUBLE}:
        return ValueType.DOUBLE
    if kinds == {ValueType.INT64_LIST, ValueType.DOUBLE_LIST}:
        return ValueType.DOUBLE_LIST
    if len(kinds) == 1:
        (kind,) = kinds
        if kind is not None:
            return kind
    if not values:
        raise InvalidValueError(f"column {name!r} has no non-null values to tell its type from")
    raise InvalidValueError(
        f"column {name!r} mixes value types: {sorted(k.value for k in kinds if k)}"
    )


def _scalar_kind(value: Any) -> ValueType | None:
    if isinstance(value, bool):
        return ValueType.BOOL
    if isinstance(value, int):
        return ValueType.INT64
    if isinstance(value, float):
        return ValueType.DOUBLE
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, bytes):
        return ValueType.BYTES
    if isinstance(value, datetime):
        return ValueType.TIMESTAMP
    return None


def _list_kind(value: Sequence[Any]) -> ValueType | None:
    inner = {_scalar_kind(v) for v in value}
    if inner <= {ValueType.INT64}:
        return ValueType.INT64_LIST
    if inner <= {ValueType.INT64, ValueType.DOUBLE}:
        return ValueType.DOUBLE_LIST
    if inner == {ValueType.STRING}:
        return ValueType.STRING_LIST
    return None


def _arrow_kind(name: str, arrow_type: pa.DataType) -> ValueType:
    for kind in FIELD_OF:
        if kind.accepts(arrow_type):
            return kind
    raise InvalidValueError(f"column {name!r} has type {arrow_type}, which Ferry cannot send")

"""Building requests from Python values: shared by the sync and the async client."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from ferry.api.registry.v1 import registry_pb2
from ferry.api.serving.v1 import serving_pb2
from ferry.api.types.v1 import types_pb2
from ferry.client._results import EntityKeys
from ferry.core.errors import InvalidValueError
from ferry.core.timestamps import datetime_to_micros
from ferry.core.types import ValueType
from ferry.wire.columns import FIELD_OF, fill_column

Columns: TypeAlias = (
    Mapping[str, Any] | pa.Table | pa.RecordBatch | Sequence[Mapping[str, Any]] | Any
)
"""Entity or push columns, in any shape a Python user has: a mapping of join key to a list,
a numpy array, a pandas Series or a pyarrow array; a pyarrow Table or RecordBatch; a pandas
DataFrame (or anything else with the Arrow stream interface); or a list of row dicts."""


def online_features_request(
    features: Sequence[str] | None, feature_service: str | None, entities: Columns
) -> tuple[serving_pb2.GetOnlineFeaturesRequest, EntityKeys]:
    """A GetOnlineFeatures request, and its entity key columns in the caller's order.

    Raises:
        InvalidValueError: neither or both of ``features`` and ``feature_service``, or an
            entity column whose type cannot be told.
    """
    if (features is None) == (feature_service is None):
        raise InvalidValueError("pass exactly one of features= and feature_service=")
    if isinstance(features, str):  # else read letter by letter: "reference 'u' is ..."
        raise InvalidValueError(
            f"features= takes a list of 'view:feature' references, not the string "
            f"{features!r}: pass [{features!r}]"
        )
    request = serving_pb2.GetOnlineFeaturesRequest()
    if feature_service is not None:
        request.feature_service = feature_service
    else:
        request.refs.refs.extend(features or [])
    return request, _fill_entities(request.entities, entities)


def model_features_request(
    model: str, selector: registry_pb2.ModelSelector, entities: Columns
) -> tuple[serving_pb2.GetModelFeaturesRequest, EntityKeys]:
    """A GetModelFeatures request, and its entity key columns in the caller's order."""
    request = serving_pb2.GetModelFeaturesRequest(model_name=model, selector=selector)
    return request, _fill_entities(request.entities, entities)


def _fill_entities(target: MutableMapping[str, types_pb2.Column], entities: Columns) -> EntityKeys:
    # A protobuf map keeps no order: the caller's column order is kept here, for the results.
    keys = {}
    for name, (kind, values, _) in typed_columns(entities).items():
        _fill(target[name], name, kind, values)
        keys[name] = (kind, values)
    return keys


def _fill(column: types_pb2.Column, name: str, kind: ValueType, values: list[Any]) -> None:
    """``fill_column``, with protobuf's refusals (an integer past 64 bits: "Value out of
    range") said as Ferry's, naming the column."""
    try:
        fill_column(column, kind, values)
    except (ValueError, TypeError) as err:
        raise InvalidValueError(
            f"column {name!r} ({kind.value}) holds a value it cannot carry: {err}", column=name
        ) from None


def push_request(
    view: str, rows: Columns | Sequence[Mapping[str, Any]], missing_features_are_null: bool
) -> serving_pb2.PushFeaturesRequest:
    """A PushFeatures request from columns in any shape (``Columns``). A column that is null
    in every row has no type to tell: it goes as null rows alone, which the server takes as
    that feature pushed as null."""
    request = serving_pb2.PushFeaturesRequest(
        view=view, missing_features_are_null=missing_features_are_null
    )
    for name, column in _as_columns(rows).items():
        if _all_null(column):
            request.null_rows[name].indexes.extend(range(len(column)))
            continue
        kind, values, nulls = _typed(name, column)
        _fill(request.columns[name], name, kind, values)
        if nulls:
            request.null_rows[name].indexes.extend(nulls)
    return request


def _all_null(column: Any) -> bool:
    if isinstance(column, pa.Array | pa.ChunkedArray):
        return len(column) > 0 and column.null_count == len(column)
    return len(column) > 0 and all(v is None for v in column)


def typed_columns(columns: Columns) -> dict[str, tuple[ValueType, list[Any], list[int]]]:
    """Each column's wire type, values (timestamps as µs) and null row indexes.

    Arrays (numpy, pandas, Arrow) are typed once per column by Arrow; lists of Python values
    by their values.

    Raises:
        InvalidValueError: not a shape of columns, or a column whose type cannot be told or
            sent; the message names the column and what it holds.
    """
    return {name: _typed(name, column) for name, column in _as_columns(columns).items()}


def _as_columns(columns: Columns) -> Mapping[str, Any]:
    """The columns by name, each a list (Python values) or an Arrow array."""
    if isinstance(columns, pa.RecordBatch):
        columns = pa.Table.from_batches([columns])
    if isinstance(columns, pa.Table):
        return {name: columns[name] for name in columns.column_names}
    if isinstance(columns, Mapping):
        return {name: _as_column(name, column) for name, column in columns.items()}
    if isinstance(columns, Sequence) and not isinstance(columns, str | bytes):
        if not all(isinstance(row, Mapping) for row in columns):
            raise InvalidValueError("a list of entities must hold one dict per row")
        names = list(dict.fromkeys(name for row in columns for name in row))
        return {name: [row.get(name) for row in columns] for name in names}
    if hasattr(columns, "__arrow_c_stream__") or _is_dataframe(columns):
        # pandas DataFrames (and polars, ...): Arrow converts every column at once.
        return _as_columns(pa.table(columns))
    raise InvalidValueError(
        "entities must be a dict of columns, a list of row dicts, a pyarrow Table or "
        f"RecordBatch, or a pandas DataFrame; got {type(columns).__name__}"
    )


def _as_column(name: str, column: Any) -> Any:
    if isinstance(column, list | tuple):
        # numpy scalars (``list(np.array([...]))``) as the Python values they stand for
        return [v.item() if isinstance(v, np.generic) else v for v in column]
    if isinstance(column, pa.Array | pa.ChunkedArray):
        return column
    if hasattr(column, "__array__") or hasattr(column, "__arrow_array__"):
        try:  # numpy arrays and pandas Series, typed once by Arrow
            return pa.array(column, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise InvalidValueError(f"column {name!r} cannot be read as one type: {err}") from err
    if isinstance(column, str | bytes) or not isinstance(column, Sequence):
        raise InvalidValueError(
            f"column {name!r} must be a list or an array of values, got {type(column).__name__}"
        )
    return list(column)


def _is_dataframe(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "columns")


def _typed(name: str, column: Any) -> tuple[ValueType, list[Any], list[int]]:
    if isinstance(column, pa.Array | pa.ChunkedArray):
        kind = _arrow_kind(name, column.type)
        if kind is ValueType.TIMESTAMP:
            if column.type.tz is None:  # naive times are UTC, as everywhere in Ferry
                column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
            column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        values = column.to_pylist()
        return kind, values, [i for i, v in enumerate(values) if v is None]
    values = [datetime_to_micros(v) if isinstance(v, datetime) else v for v in column]
    # An empty column has no type to tell; any will do, the server sees zero rows.
    kind = _python_kind(name, [v for v in column if v is not None]) if column else ValueType.INT64
    return kind, values, [i for i, v in enumerate(values) if v is None]


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
    if pa.types.is_string_view(arrow_type):
        return ValueType.STRING
    for kind in FIELD_OF:
        if kind.accepts(arrow_type):
            return kind
    if pa.types.is_null(arrow_type):
        raise InvalidValueError(f"column {name!r} holds only nulls: its type cannot be told")
    raise InvalidValueError(f"column {name!r} holds {arrow_type}, which Ferry cannot send")

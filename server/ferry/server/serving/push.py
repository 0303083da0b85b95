"""PushFeatures: rows of one view, checked against its schema, written conditionally.

Accepted columns: every join key, the view's timestamp field (timestamp values), optionally
its created-timestamp field, and every feature. A pushed row replaces the stored row whole,
so a push that leaves a feature out is refused unless the caller says left-out features are
null (``missing_features_are_null``): storing them as null silently would blank values the
stored row has. (Merging into the stored row was the other choice; it would give a row
whose one event timestamp covers values from different events, which no training frame
built by the as-of rule can reproduce.) A feature null in every row may come as null rows
alone. A column must have its declared type, with one allowance: numbers may widen or
narrow between integer and floating types when every value fits (so clients that only know
"int" and "float" can push), and int32 values may fill int64 keys and back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from ferry.api.serving.v1 import serving_pb2
from ferry.core.codec import RowCodec
from ferry.core.errors import InvalidValueError
from ferry.core.ingest import NEWEST, IngestBatch, ingest_rows
from ferry.core.repo import FeatureView
from ferry.core.timestamps import describe_micros
from ferry.core.types import ValueType
from ferry.server.errors import InvalidRequestError
from ferry.wire.columns import column_length, column_type, column_values

_INTS = {ValueType.INT64, ValueType.INT32}
_NUMBERS = {ValueType.INT64, ValueType.INT32, ValueType.DOUBLE, ValueType.FLOAT}
_INT_RANGE = {ValueType.INT64: 1 << 63, ValueType.INT32: 1 << 31}
_FLOAT32_MAX = 3.4028234663852886e38


def push_rows(
    request: serving_pb2.PushFeaturesRequest,
    view: FeatureView,
    codec: RowCodec,
    max_rows: int,
    latest_micros: int,
) -> IngestBatch:
    """The push through the one ingest path: one row per distinct key, the newest of
    duplicates (``superseded`` counts the others).

    Raises:
        InvalidRequestError: unknown, missing, mistyped or ragged columns, features left out
            without ``missing_features_are_null``, bad null indexes,
            nulls in keys or timestamps, no rows or too many, or a timestamp later than
            ``latest_micros`` (µs).
        InvalidValueError: a value that does not fit its feature; the message names it.
    """
    source = view.source
    roles: dict[str, tuple[str, ValueType]] = {k.name: ("join key", k.type) for k in view.join_keys}
    roles[source.timestamp_field] = ("timestamp field", ValueType.TIMESTAMP)
    if source.created_timestamp_field:
        roles[source.created_timestamp_field] = ("created timestamp field", ValueType.TIMESTAMP)
    roles.update({f.name: ("feature", f.type) for f in view.features})
    for name in [*request.columns, *request.null_rows]:
        if name not in roles:
            raise InvalidRequestError(
                f"column {name!r} is not a join key, timestamp field or feature of view "
                f"{view.name!r}",
                reason="UNKNOWN_COLUMN",
                column=name,
                feature_view=view.name,
            )
    if not request.columns and not request.null_rows:
        # An empty push (``push(view, [])``) would otherwise be named by its first missing
        # column, which sends the caller looking for a column they did send in every row.
        raise InvalidRequestError(
            f"a push to view {view.name!r} holds no rows", reason="NO_ROWS", rows=0
        )
    required = [*view.join_key_names, source.timestamp_field]
    for name in required:
        if name not in request.columns:
            raise InvalidRequestError(
                f"push to view {view.name!r} lacks column {name!r} ({roles[name][0]})",
                reason="MISSING_COLUMN",
                column=name,
                feature_view=view.name,
            )
    lengths = {name: column_length(c) for name, c in request.columns.items()}
    if len(set(lengths.values())) != 1:
        raise InvalidRequestError(
            "pushed columns have unequal lengths: "
            + ", ".join(f"{name}={n}" for name, n in lengths.items()),
            reason="RAGGED_COLUMNS",
        )
    rows = next(iter(lengths.values()))
    if rows == 0 or rows > max_rows:
        raise InvalidRequestError(
            f"a push needs 1 to {max_rows} rows, got {rows}",
            reason="TOO_MANY_ROWS" if rows else "NO_ROWS",
            rows=rows,
            limit=max_rows,
        )
    for name in request.null_rows:
        if name not in request.columns and sorted(request.null_rows[name].indexes) != list(
            range(rows)
        ):
            raise InvalidRequestError(
                f"column {name!r} comes only as null rows, which must then name all {rows} "
                "rows (send the column to give values)",
                reason="BAD_NULL_INDEX",
                column=name,
            )
    columns: dict[str, list[Any]] = {}
    for name, column in request.columns.items():
        role, kind = roles[name]
        values = _typed_values(name, role, kind, column_type(column), column_values(column))
        nulls = request.null_rows[name].indexes if name in request.null_rows else []
        for index in nulls:
            if index >= rows:
                raise InvalidRequestError(
                    f"null row index {index} of column {name!r} is not below the row count {rows}",
                    reason="BAD_NULL_INDEX",
                    column=name,
                    index=index,
                )
            if role in ("join key", "timestamp field"):
                raise InvalidRequestError(
                    f"column {name!r} ({role}) cannot hold nulls", reason="NULL_KEY", column=name
                )
            values[index] = None
        if role in ("timestamp field", "created timestamp field"):
            _check_not_future(name, values, latest_micros)
        columns[name] = values
    _check_every_feature_given(request, view)
    return ingest_rows(_table(view, columns, rows), view, codec, as_of_micros=NEWEST, use_ttl=False)


def _check_every_feature_given(request: serving_pb2.PushFeaturesRequest, view: FeatureView) -> None:
    given = {*request.columns, *request.null_rows}
    missing = [f.name for f in view.features if f.name not in given]
    if missing and not request.missing_features_are_null:
        raise InvalidRequestError(
            f"push to view {view.name!r} leaves out feature(s) {', '.join(missing)}: a pushed "
            "row replaces the stored row whole, so they would be stored as null. Push every "
            "feature (None where a value is null), or set missing_features_are_null to store "
            "them as null on purpose",
            reason="MISSING_FEATURES",
            feature_view=view.name,
            features=",".join(missing),
        )


def _check_not_future(name: str, values: list[Any], latest_micros: int) -> None:
    late = next((i for i, v in enumerate(values) if v is not None and v > latest_micros), None)
    if late is not None:
        raise InvalidRequestError(
            f"row {late}: {name!r} is {describe_micros(values[late])}, later than the server's "
            f"clock allows ({describe_micros(latest_micros)}); a row from the future would win "
            "every later write",
            reason="FUTURE_TIMESTAMP",
            column=name,
            row=late,
        )


def _typed_values(
    name: str, role: str, kind: ValueType, sent: ValueType | None, values: list[Any]
) -> list[Any]:
    if sent is kind or (role == "join key" and kind in _INTS and sent in _INTS):
        return values
    element, sent_element = kind.element or kind, (sent.element or sent) if sent else None
    same_shape = (kind.element is None) == (sent is not None and sent.element is None)
    if same_shape and element in _NUMBERS and sent_element in _NUMBERS:
        return (
            [_convert_number(name, element, v) for v in values]
            if kind.element is None
            else [[_convert_number(name, element, x) for x in v] for v in values]
        )
    raise InvalidRequestError(
        f"column {name!r} ({role}) is {kind.value}, but holds "
        f"{sent.value if sent else 'no values'}",
        reason="WRONG_COLUMN_TYPE",
        column=name,
        expected=kind.value,
        got=sent.value if sent else "none",
    )


def _convert_number(name: str, kind: ValueType, value: Any) -> Any:
    if kind in _INTS:
        if isinstance(value, float) and not value.is_integer():
            raise InvalidValueError(
                f"column {name!r} is {kind.value}; {value!r} is not an integer",
                column=name,
                value=value,
            )
        number = int(value)
        if not -_INT_RANGE[kind] <= number < _INT_RANGE[kind]:
            raise InvalidValueError(
                f"column {name!r} is {kind.value}; {number} does not fit",
                column=name,
                value=number,
            )
        return number
    real = float(value)
    if kind is ValueType.FLOAT and math.isfinite(real) and abs(real) > _FLOAT32_MAX:
        # Arrow would store it as inf; the codec rejects it as the source path does.
        raise InvalidValueError(
            f"column {name!r} is float; {real!r} does not fit", column=name, value=real
        )
    return real


def _table(view: FeatureView, columns: Mapping[str, list[Any]], rows: int) -> pa.Table:
    """The push as an Arrow table of the view's columns (features not sent all null)."""
    source = view.source
    arrays: dict[str, pa.Array] = {}
    for key in view.join_keys:
        # Keys of either integer width encode alike (``ferry.core.keys``): carry them as int64.
        kind = pa.int64() if key.type in _INTS else key.type.arrow_type
        arrays[key.name] = pa.array(columns[key.name], kind)
    for name in (source.timestamp_field, source.created_timestamp_field):
        if name:
            arrays[name] = pa.array(columns.get(name, [None] * rows), pa.int64())
    for feature in view.features:
        values = columns.get(feature.name, [None] * rows)
        kind = pa.int64() if feature.type is ValueType.TIMESTAMP else feature.type.arrow_type
        arrays[feature.name] = pa.array(values, kind)
    return pa.table(arrays)

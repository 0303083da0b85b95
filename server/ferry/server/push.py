"""PushFeatures: rows of one view, checked against its schema, written conditionally.

Accepted columns: every join key, the view's timestamp field (timestamp values), optionally
its created-timestamp field, and any subset of its features (left-out features are stored
as null). A column must have its declared type, with one allowance: numbers may widen or
narrow between integer and floating types when every value fits (so clients that only know
"int" and "float" can push), and int32 values may fill int64 keys and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferry.api.serving.v1 import serving_pb2
from ferry.core.codec import RowCodec
from ferry.core.errors import InvalidValueError
from ferry.core.keys import encode_key
from ferry.core.repo import FeatureView
from ferry.core.types import ValueType
from ferry.server.errors import InvalidRequestError
from ferry.wire.columns import column_length, column_type, column_values

_INTS = {ValueType.INT64, ValueType.INT32}
_NUMBERS = {ValueType.INT64, ValueType.INT32, ValueType.DOUBLE, ValueType.FLOAT}
_INT_RANGE = {ValueType.INT64: 1 << 63, ValueType.INT32: 1 << 31}


def push_rows(
    request: serving_pb2.PushFeaturesRequest, view: FeatureView, codec: RowCodec, max_rows: int
) -> list[tuple[bytes, bytes]]:
    """Encoded (key, row) pairs of a push, one per distinct key (the newest of duplicates).

    Raises:
        InvalidRequestError: unknown, missing, mistyped or ragged columns, bad null indexes,
            nulls in keys or timestamps, no rows or too many.
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
        columns[name] = values
    return _encode(view, codec, columns, rows)


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
    return float(value)


def _encode(
    view: FeatureView, codec: RowCodec, columns: Mapping[str, list[Any]], rows: int
) -> list[tuple[bytes, bytes]]:
    source = view.source
    events = columns[source.timestamp_field]
    created = columns.get(source.created_timestamp_field or "", [None] * rows)
    features = [columns.get(f.name, [None] * rows) for f in view.features]
    keys = [columns[k] for k in view.join_key_names]
    newest: dict[bytes, tuple[tuple[int, int], bytes]] = {}
    for i in range(rows):
        key = encode_key([k[i] for k in keys])
        try:
            row = codec.encode(events[i], created[i], [f[i] for f in features])
        except InvalidValueError as err:
            raise InvalidValueError(f"row {i}: {err}", row=i, **err.metadata) from err
        order = (events[i], created[i] if created[i] is not None else -(1 << 63))
        if key not in newest or order >= newest[key][0]:
            newest[key] = (order, row)
    return [(key, row) for key, (_, row) in newest.items()]

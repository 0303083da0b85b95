"""Entity rows of a request: typed join-key columns, checked and turned into online keys."""

from __future__ import annotations

from collections.abc import Mapping

from ferry.api.types.v1 import types_pb2
from ferry.core.keys import KeyValue, encode_int_keys, encode_key, encode_str_keys
from ferry.core.types import ValueType
from ferry.server.errors import InvalidRequestError
from ferry.server.serving.catalog import FeaturePlan, ViewSlot
from ferry.wire.columns import column_type, column_values

_INTEGER_KEYS = {ValueType.INT64, ValueType.INT32}


def parse_entities(
    entities: Mapping[str, types_pb2.Column], plan: FeaturePlan, max_rows: int
) -> tuple[int, dict[str, list[KeyValue]]]:
    """The row count and each join key's values.

    Raises:
        InvalidRequestError: no entities, a missing or unexpected join key, a key of the
            wrong type, columns of unequal length, or more rows than ``max_rows``.
    """
    if not entities:
        raise InvalidRequestError("the request has no entity columns", reason="NO_ENTITIES")
    for name in entities:
        if name not in plan.join_keys:
            raise InvalidRequestError(
                f"entity column {name!r} is not a join key of the requested features; they "
                f"need: {', '.join(plan.join_keys)}",
                reason="UNEXPECTED_JOIN_KEY",
                join_key=name,
            )
    values: dict[str, list[KeyValue]] = {}
    for name, kind in plan.join_keys.items():
        column = entities.get(name)
        if column is None:
            needers = [s.view.name for s in plan.slots if name in s.view.join_key_names]
            raise InvalidRequestError(
                f"missing join key {name!r}, needed by feature view {needers[0]!r}",
                reason="MISSING_JOIN_KEY",
                join_key=name,
                feature_view=needers[0],
            )
        sent = column_type(column)
        ok = sent in _INTEGER_KEYS if kind in _INTEGER_KEYS else sent is ValueType.STRING
        if not ok:
            raise InvalidRequestError(
                f"join key {name!r} is {kind.value}, but its column holds "
                f"{sent.value if sent else 'no values'}",
                reason="WRONG_JOIN_KEY_TYPE",
                join_key=name,
                expected=kind.value,
                got=sent.value if sent else "none",
            )
        values[name] = column_values(column)
    lengths = {name: len(v) for name, v in values.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidRequestError(
            "entity columns have unequal lengths: "
            + ", ".join(f"{name}={n}" for name, n in lengths.items()),
            reason="RAGGED_ENTITY_COLUMNS",
            **{f"length_of_{name}": n for name, n in lengths.items()},
        )
    rows = next(iter(lengths.values()))
    if rows == 0:
        raise InvalidRequestError("the request has no entity rows", reason="NO_ENTITIES")
    if rows > max_rows:
        raise InvalidRequestError(
            f"{rows} entity rows is more than the limit of {max_rows} per request",
            reason="TOO_MANY_ENTITY_ROWS",
            rows=rows,
            limit=max_rows,
        )
    return rows, values


def slot_keys(slot: ViewSlot, values: Mapping[str, list[KeyValue]]) -> list[bytes]:
    """The canonical entity keys of a view's slot, one per entity row."""
    columns = [values[name] for name in slot.view.join_key_names]
    if len(columns) == 1:
        # parse_entities checked the column's type, so the unchecked batch encoders apply.
        if slot.view.join_keys[0].type is ValueType.STRING:
            return encode_str_keys(columns[0])  # type: ignore[arg-type]
        return encode_int_keys(columns[0])  # type: ignore[arg-type]
    return [encode_key(row) for row in zip(*columns, strict=True)]

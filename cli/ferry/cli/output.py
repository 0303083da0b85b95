"""How the CLI prints feature values as JSON: timestamps as ISO 8601, bytes as base64, and
the floats JSON has no literal for as the strings "NaN", "Infinity" and "-Infinity", so
every line is strict JSON (``json.dumps(..., allow_nan=False)`` holds)."""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from typing import Any

from ferry.core.timestamps import describe_micros
from ferry.core.types import ValueType


def jsonable(kind: ValueType, value: Any) -> Any:
    """``value`` of a feature of type ``kind``, ready for ``json.dumps``."""
    if value is None:
        return None
    if kind is ValueType.TIMESTAMP:
        return instant_text(value)
    if kind is ValueType.BYTES:
        return base64.b64encode(value).decode()
    return strict(value)


def instant_text(value: datetime | int) -> str:
    """ISO 8601 in UTC with a ``Z``; an int is µs since the epoch (past year 9999, where
    datetimes end, it is said as a count)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return describe_micros(value)


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default`` for the values a feature can hold."""
    if isinstance(value, datetime):
        return instant_text(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def strict(value: Any) -> Any:
    """``value`` with non-finite floats (also inside lists and dicts) as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    return value

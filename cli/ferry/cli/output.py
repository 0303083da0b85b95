"""How the CLI prints feature values as JSON: timestamps as ISO 8601, bytes as base64."""

from __future__ import annotations

import base64
from typing import Any

from ferry.core.timestamps import format_micros
from ferry.core.types import ValueType


def jsonable(kind: ValueType, value: Any) -> Any:
    """``value`` of a feature of type ``kind``, ready for ``json.dumps``."""
    if value is None:
        return None
    if kind is ValueType.TIMESTAMP:
        return format_micros(value)
    if kind is ValueType.BYTES:
        return base64.b64encode(value).decode()
    return value

"""Instants and durations as integer microseconds since the Unix epoch, UTC.

Ferry stores and compares every timestamp as an int64 of microseconds (Arrow's
``timestamp[us, UTC]``). Instants without a time zone are read as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from ferry.core.errors import InvalidValueError

MICROS_PER_SECOND = 1_000_000
_DURATION_PART = re.compile(r"(\d+)(w|d|h|m|s)")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


def now_micros() -> int:
    """The current instant."""
    return datetime_to_micros(datetime.now(UTC))


def datetime_to_micros(value: datetime) -> int:
    """Microseconds since the epoch of ``value``; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def micros_to_datetime(micros: int) -> datetime:
    """The UTC datetime of ``micros`` since the epoch."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def format_micros(micros: int) -> str:
    """ISO 8601 text of an instant, in UTC with a ``Z``."""
    return micros_to_datetime(micros).isoformat().replace("+00:00", "Z")


def describe_micros(micros: int) -> str:
    """``format_micros`` for any int64, for messages: past year 9999 (where datetimes end)
    the raw count is given instead of raising."""
    try:
        return format_micros(micros)
    except (OverflowError, ValueError):
        return f"{micros} µs since the epoch"


def parse_instant(text: str) -> int:
    """Parse an ISO 8601 instant (or ``now``) into microseconds; no zone means UTC.

    Raises:
        InvalidValueError: ``text`` is not an ISO 8601 date or date-time.
    """
    if text.strip().lower() == "now":
        return now_micros()
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise InvalidValueError(
            f"{text!r} is not an ISO 8601 instant (e.g. 2026-01-04T00:00:00Z)"
        ) from err
    return datetime_to_micros(value)


MAX_DURATION_S = 36_500 * 86_400
"""The longest duration (TTL) accepted, 100 years: beyond it window starts and expiry times
leave the range of dates that Python, Arrow and the stores all share."""


def parse_duration(text: str) -> int:
    """Parse a duration such as ``2d``, ``36h``, ``1h30m`` or ``90s`` into microseconds.

    Raises:
        InvalidValueError: ``text`` is not a positive duration of w/d/h/m/s parts, or is
            longer than ``MAX_DURATION_S``.
    """
    compact = text.replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise InvalidValueError(
            f"{text!r} is not a duration: use parts like 2d, 36h, 1h30m, 90s (units w d h m s)"
        )
    if any(len(n) > 12 for n, _ in parts):  # no duration needs it; int() of huge text is slow
        raise InvalidValueError(f"{text[:40]!r}... is longer than the maximum duration, 36500d")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise InvalidValueError(f"{text!r} is not a positive duration")
    if seconds > MAX_DURATION_S:
        raise InvalidValueError(f"{text!r} is longer than the maximum duration, 36500d (100 years)")
    return seconds * MICROS_PER_SECOND


def to_utc_micros(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Normalise a timestamp column to ``timestamp[us, UTC]``; a column without a zone is UTC.

    Finer units are truncated to microseconds, the unit Ferry stores.
    """
    kind = column.type
    if not pa.types.is_timestamp(kind):
        raise InvalidValueError(f"expected a timestamp column, found {kind}")
    if kind.tz is None:
        # Arrow stores naive timestamps as epoch offsets already: adding the zone is exact.
        column = column.cast(pa.timestamp(kind.unit, tz="UTC"))
    return column.cast(pa.timestamp("us", tz="UTC"), safe=False)

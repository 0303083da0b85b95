"""Rows of one view on their way into the online store: the one ingest path.

The materializer (a batch of source rows, as of the window's end) and PushFeatures (the
rows of a push, newest wins) both come here, so both drop unplaceable rows, keep one row
per key by the same rule (``ferry.core.asof``) and report bad values the same way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry.core.asof import latest_per_key
from ferry.core.codec import RowCodec
from ferry.core.errors import InvalidValueError
from ferry.core.keys import encode_key_columns
from ferry.core.repo import FeatureView

NEWEST = (1 << 63) - 1
"""``as_of_micros`` that keeps each key's newest row, however recent (what a push wants)."""


@dataclass(frozen=True)
class IngestBatch:
    """The encoded rows of one batch, one per distinct key, and what was left out.

    Attributes:
        rows: (storage key, encoded row) pairs, keys distinct.
        null_timestamp: Input rows dropped for a null event time.
        null_key: Input rows dropped for a null join key (with an event time).
        superseded: Input rows that were not their key's chosen row (an older row of the
            same key, a row later than ``as_of_micros``, or one too old for the TTL).
    """

    rows: list[tuple[bytes, bytes]]
    null_timestamp: int
    null_key: int
    superseded: int


def ingest_rows(
    table: pa.Table, view: FeatureView, codec: RowCodec, *, as_of_micros: int, use_ttl: bool
) -> IngestBatch:
    """Encode each key's as-of row at ``as_of_micros`` of ``table``.

    Args:
        table: Rows of ``view``: its join keys, timestamp field(s) and features (Arrow
            timestamps or int64 µs for the timestamps).
        view: The view the rows belong to.
        codec: The view's row codec.
        as_of_micros: The time the rows are taken as of (``NEWEST`` for the newest).
        use_ttl: Whether rows too old for the view's TTL at ``as_of_micros`` are left out.

    Raises:
        InvalidValueError: a value does not fit its feature; the message and metadata name
            the row of ``table`` and the feature.
    """
    placeable = _placeable(table, view)
    usable = table if placeable is None else table.filter(placeable)
    null_timestamp, null_key = _null_counts(table, view, placeable)
    source = view.source
    chosen = latest_per_key(
        usable,
        view.join_key_names,
        at_micros=as_of_micros,
        event_timestamp=source.timestamp_field,
        created_timestamp=source.created_timestamp_field,
        ttl_micros=view.ttl_micros if use_ttl else None,
    )
    everything = len(chosen) == usable.num_rows  # chosen is sorted: then it is every row
    latest = usable if everything else usable.take(chosen)
    keys = encode_key_columns([latest[k] for k in view.join_key_names])
    try:
        rows = codec.encode_table(latest, source.timestamp_field, source.created_timestamp_field)
    except InvalidValueError as err:
        row = err.metadata.get("row")
        if row is None:
            raise
        # The codec counts rows of the reduced table; name the caller's row instead.
        kept = np.arange(table.num_rows) if placeable is None else np.flatnonzero(placeable)
        original = int(kept[chosen[int(row)]])
        raise InvalidValueError(
            f"row {original}: {err.__cause__ or err}",
            row=original,
        ) from err
    return IngestBatch(
        list(zip(keys, rows, strict=True)),
        null_timestamp,
        null_key,
        usable.num_rows - latest.num_rows,
    )


def _placeable(table: pa.Table, view: FeatureView) -> np.ndarray | None:
    """The mask of rows with an event time and every join key; None when that is all."""
    columns = [view.source.timestamp_field, *view.join_key_names]
    if table.num_rows == 0 or all(table[name].null_count == 0 for name in columns):
        return None  # null counts are metadata: no pass over the rows
    has_time = pc.is_valid(table[view.source.timestamp_field])
    has_key = functools.reduce(pc.and_, [pc.is_valid(table[k]) for k in view.join_key_names])
    keep = np.asarray(pc.and_(has_time, has_key))
    return None if keep.all() else keep


def _null_counts(
    table: pa.Table, view: FeatureView, placeable: np.ndarray | None
) -> tuple[int, int]:
    """Rows left out for a null event time, and (with a time) for a null join key."""
    if placeable is None:
        return 0, 0
    null_timestamp = table[view.source.timestamp_field].null_count
    return null_timestamp, int(table.num_rows - placeable.sum()) - null_timestamp

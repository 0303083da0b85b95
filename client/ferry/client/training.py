"""Point-in-time training data: the entity table joined as of each row's time, offline.

For every entity row (join keys + a timestamp, any other columns passed through) and every
requested feature, the value is taken from the view's row chosen by the one as-of rule of
``ferry.core.asof`` -- the rule the materializer uses to load the online store, so a model
trains on exactly what serving will hand it. A row without a match (no earlier row, or only
rows older than the TTL) gets nulls; no entity row is ever dropped, and the order is kept.

Each view's source is streamed batch by batch, with the time window of the entity table
pushed down to Parquet statistics; the best candidate of every entity row is carried from
batch to batch, so memory grows with the entity table and one batch, not with the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry.core.asof import NO_MATCH, as_of
from ferry.core.codec import NO_CREATED_TIMESTAMP
from ferry.core.errors import InvalidValueError
from ferry.core.repo import FeatureRef, FeatureRepo, FeatureView, check_distinct
from ferry.core.repo_file import load_repo
from ferry.core.timestamps import to_utc_micros
from ferry.core.types import ValueType
from ferry.stores.offline import Window, open_checked_source, row_groups, scan

EVENT_TIMESTAMP_SUFFIX = ":__event_timestamp"
"""Suffix of the per-view event-time columns added with ``include_event_timestamps``."""

_ENTITY_TIME = "__ferry_entity_time__"


def get_training_frame(
    repo: FeatureRepo | str,
    entities: Any,
    *,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
    timestamp_column: str = "event_timestamp",
    include_event_timestamps: bool = False,
    batch_rows: int = 65_536,
) -> pa.Table:
    """The entity table with one column per feature (``view:feature``), as of each row's time.

    Args:
        repo: A loaded repo or the path of its file.
        entities: A pyarrow Table or pandas DataFrame with the join keys of every requested
            view and ``timestamp_column``; other columns (labels...) are passed through.
        features: ``view:feature`` / ``view:*`` references, or
        feature_service: the name of a feature service.
        timestamp_column: The entity rows' time; naive timestamps are UTC.
        include_event_timestamps: Also add ``<view>:__event_timestamp``, the event time of the
            row each view's values came from (null where none matched).
        batch_rows: Source rows read per batch.

    Raises:
        UnknownReferenceError: unknown features or service.
        InvalidValueError: the entity table lacks a join key or the timestamp column, holds a
            join key of another type, or has a column of a name the frame adds.
        SourceError: a source is missing or does not match the repo.
    """
    repo = load_repo(repo) if isinstance(repo, str) else repo
    table = (
        entities
        if isinstance(entities, pa.Table)
        else pa.Table.from_pandas(entities, preserve_index=False)
    )
    if (features is None) == (feature_service is None):
        raise InvalidValueError("pass exactly one of features= and feature_service=")
    refs = (
        repo.resolve(features) if features is not None else repo.service(str(feature_service)).refs
    )
    check_distinct(refs)
    added = [str(r) for r in refs]
    if include_event_timestamps:
        added += [view + EVENT_TIMESTAMP_SUFFIX for view in dict.fromkeys(r.view for r in refs)]
    taken = sorted(set(added) & set(table.column_names))
    if taken:
        raise InvalidValueError(
            f"the entity table already has a column named {taken[0]!r}, which the training "
            "frame adds: rename or drop it",
            column=taken[0],
        )
    if timestamp_column not in table.column_names:
        raise InvalidValueError(
            f"the entity table has no timestamp column {timestamp_column!r}",
            column=timestamp_column,
        )
    times = to_utc_micros(table[timestamp_column])
    out = table
    for view_name in dict.fromkeys(r.view for r in refs):
        view = repo.view(view_name)
        wanted = [r for r in refs if r.view == view_name]
        joined = _join_view(repo, view, wanted, table, times, batch_rows)
        for ref in wanted:
            out = out.append_column(str(ref), joined.values[ref.feature])
        if include_event_timestamps:
            out = out.append_column(view.name + EVENT_TIMESTAMP_SUFFIX, joined.event_timestamps)
    return out


@dataclass
class _Joined:
    values: dict[str, pa.Array] = field(default_factory=dict)
    event_timestamps: pa.Array | None = None


def _join_view(
    repo: FeatureRepo,
    view: FeatureView,
    refs: list[FeatureRef],
    entities: pa.Table,
    times: pa.ChunkedArray,
    batch_rows: int,
) -> _Joined:
    missing = [k for k in view.join_key_names if k not in entities.column_names]
    if missing:
        raise InvalidValueError(
            f"the entity table lacks join key {missing[0]!r} of feature view {view.name!r}",
            join_key=missing[0],
            feature_view=view.name,
        )
    for key in view.join_keys:
        found = entities.schema.field(key.name).type
        if not _fits_join_key(found, key.type):
            raise InvalidValueError(
                f"the entity table's column {key.name!r} is {found}; feature view "
                f"{view.name!r} joins on it as {key.type.value}",
                join_key=key.name,
                feature_view=view.name,
            )
    dataset = open_checked_source(repo, view)
    keys = entities.select(list(view.join_key_names)).append_column(_ENTITY_TIME, times)
    best = _Best(entities.num_rows, [r.feature for r in refs])
    window = _window(view, times)
    if window is not None:
        pieces = row_groups(dataset, view, window)
        for *_, batch in scan(pieces, view, window, batch_rows):
            if batch.num_rows:
                best.offer(batch, keys, view)
    return best.result({r.feature: view.feature(r.feature).type.arrow_type for r in refs})


def _fits_join_key(found: pa.DataType, declared: ValueType) -> bool:
    """Integer keys join any integer column (int32 and int64 keys encode alike, and pandas
    makes int64 of what was int32); string keys string columns."""
    if declared is ValueType.STRING:
        return declared.accepts(found)
    return bool(pa.types.is_integer(found))


def _window(view: FeatureView, times: pa.ChunkedArray) -> Window | None:
    """Event times that can match any entity row: up to the latest row time, and no older
    than the TTL before the earliest."""
    bounds = pc.min_max(times.cast(pa.int64()))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if high is None:
        return None
    after = low - view.ttl_micros if view.ttl_micros is not None else None
    return Window(start=None, end=high, after=after)


class _Best:
    """Each entity row's best match so far, across source batches.

    Matches are kept as small tables of (entity row, values); a later, better match of the
    same row supersedes the earlier one, and the pile is compacted to one match per row
    whenever it grows past twice the entity count, so memory stays bounded.
    """

    def __init__(self, rows: int, features: list[str]) -> None:
        self.rows = rows
        self.features = features
        self.event = np.full(rows, np.iinfo(np.int64).min, dtype=np.int64)
        self.created = np.full(rows, np.iinfo(np.int64).min, dtype=np.int64)
        self.pile: list[pa.Table] = []
        self.piled = 0

    def offer(self, batch: pa.Table, keys: pa.Table, view: FeatureView) -> None:
        source = view.source
        found = as_of(
            batch,
            keys,
            view.join_key_names,
            event_timestamp=source.timestamp_field,
            created_timestamp=source.created_timestamp_field,
            entity_timestamp=_ENTITY_TIME,
            ttl_micros=view.ttl_micros,
        )
        rows = np.flatnonzero(found != NO_MATCH)
        if not len(rows):
            return
        picked = batch.take(pa.array(found[rows]))
        event = np.asarray(picked[source.timestamp_field].cast(pa.int64()), dtype=np.int64)
        if source.created_timestamp_field:
            created = np.asarray(
                pc.fill_null(
                    picked[source.created_timestamp_field].cast(pa.int64()), NO_CREATED_TIMESTAMP
                ),
                dtype=np.int64,
            )
        else:
            created = np.full(len(rows), NO_CREATED_TIMESTAMP, dtype=np.int64)
        # Ties go to the later batch, as ties within a batch go to the later row.
        better = (event > self.event[rows]) | (
            (event == self.event[rows]) & (created >= self.created[rows])
        )
        if not better.any():
            return
        rows, keep = rows[better], np.flatnonzero(better)
        self.event[rows], self.created[rows] = event[keep], created[keep]
        update = (
            picked.select(self.features)
            .take(pa.array(keep))
            .append_column("__row__", pa.array(rows, pa.int64()))
            .append_column("__event__", pa.array(event[keep], pa.int64()))
        )
        self.pile.append(update)
        self.piled += update.num_rows
        if self.piled > 2 * self.rows:
            self.pile = [self._compact()]
            self.piled = self.pile[0].num_rows

    def _compact(self) -> pa.Table:
        """One match per entity row: the last one piled, which is the best."""
        table = pa.concat_tables(self.pile)
        order = np.asarray(table["__row__"])[::-1]
        _, first = np.unique(order, return_index=True)
        return table.take(pa.array(len(order) - 1 - first))

    def result(self, types: dict[str, pa.DataType]) -> _Joined:
        joined = _Joined()
        if not self.pile:
            for name, kind in types.items():
                joined.values[name] = pa.nulls(self.rows, kind)
            joined.event_timestamps = pa.nulls(self.rows, pa.timestamp("us", tz="UTC"))
            return joined
        table = self._compact()
        positions = np.full(self.rows, -1, dtype=np.int64)
        positions[np.asarray(table["__row__"])] = np.arange(table.num_rows)
        index = pa.array(positions, mask=positions < 0)
        for name, kind in types.items():
            joined.values[name] = table[name].take(index).cast(kind).combine_chunks()
        joined.event_timestamps = (
            table["__event__"].take(index).cast(pa.timestamp("us", tz="UTC")).combine_chunks()
        )
        return joined

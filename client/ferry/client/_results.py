"""Decoding responses into Python values: shared by the sync and the async client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ferry.api.serving.v1 import serving_pb2
from ferry.api.types.v1 import types_pb2
from ferry.core.types import ValueType
from ferry.wire.columns import TYPE_OF_FIELD, column_type, column_values

Status = str
"""A value status by name: PRESENT, NULL_VALUE, NOT_FOUND or OUTSIDE_MAX_AGE."""

_STATUS_NAMES = {
    number: name.removeprefix("VALUE_STATUS_") for name, number in types_pb2.ValueStatus.items()
}


@dataclass(frozen=True)
class FeatureValues:
    """One feature's served values, one entry per entity row.

    Attributes:
        name: ``view:feature``.
        type: The feature's type.
        values: The value where the status is PRESENT, else None (a stale value is in
            ``stale_values``, never here).
        statuses: Why each row has or lacks a value.
        event_timestamps: Event time (µs since the epoch) of the stored row, 0 if none.
        stale_values: Values of rows whose status is OUTSIDE_MAX_AGE, None elsewhere.
    """

    name: str
    type: ValueType
    values: list[Any]
    statuses: list[Status]
    event_timestamps: list[int]
    stale_values: list[Any]


class OnlineFeatures:
    """The answer to a feature request: named, typed columns in request order."""

    def __init__(self, features: list[FeatureValues], row_count: int) -> None:
        self.features = features
        self.row_count = row_count
        self._by_name = {f.name: f for f in features}

    def __getitem__(self, name: str) -> FeatureValues:
        return self._by_name[name]

    def __iter__(self) -> Iterator[FeatureValues]:
        return iter(self.features)

    def __len__(self) -> int:
        return self.row_count

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_dict(self) -> dict[str, list[Any]]:
        """Feature name -> values (None where not PRESENT)."""
        return {f.name: f.values for f in self.features}

    def to_arrow(self) -> pa.Table:
        """A pyarrow Table: per feature a typed column (null where not PRESENT), plus
        ``<name>__status`` and ``<name>__event_timestamp`` columns."""
        columns: dict[str, pa.Array] = {}
        for f in self.features:
            columns[f.name] = pa.array(
                f.values,
                type=f.type.arrow_type if f.type is not ValueType.TIMESTAMP else pa.int64(),
            ).cast(f.type.arrow_type)
            columns[f"{f.name}__status"] = pa.array(f.statuses, pa.string())
            columns[f"{f.name}__event_timestamp"] = pa.array(f.event_timestamps, pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            )
        return pa.table(columns)


def decode_online_features(
    response: serving_pb2.GetOnlineFeaturesResponse | serving_pb2.GetModelFeaturesResponse,
) -> OnlineFeatures:
    """The result of GetOnlineFeatures (or the features of GetModelFeatures)."""
    features = []
    for column in response.features:
        kind = column_type(column.values) or TYPE_OF_FIELD["int64_values"]
        raw = column_values(column.values)
        statuses = [_STATUS_NAMES[s] for s in column.statuses]
        features.append(
            FeatureValues(
                name=column.name,
                type=kind,
                values=[v if s == "PRESENT" else None for v, s in zip(raw, statuses, strict=True)],
                statuses=statuses,
                event_timestamps=list(column.event_timestamp_micros),
                stale_values=[
                    v if s == "OUTSIDE_MAX_AGE" else None
                    for v, s in zip(raw, statuses, strict=True)
                ],
            )
        )
    return OnlineFeatures(features, int(response.row_count))

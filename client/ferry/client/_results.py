"""Decoding responses into Python values: shared by the sync and the async client.

One rule for every way out (``.values``, ``to_dict``, ``to_arrow``, ``to_pandas``): values
are typed as the feature is declared, a timestamp is a timezone-aware UTC ``datetime``, a
list is a list, and a value that is not PRESENT is None (null in Arrow, NA in pandas).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ferry.api.serving.v1 import serving_pb2
from ferry.api.types.v1 import types_pb2
from ferry.core.timestamps import micros_to_datetime
from ferry.core.types import ValueType
from ferry.wire.columns import TYPE_OF_FIELD, column_type, column_values

if TYPE_CHECKING:
    import pandas as pd

Status = str
"""A value status by name: PRESENT, NULL_VALUE, NOT_FOUND or OUTSIDE_MAX_AGE."""

EntityKeys = Mapping[str, tuple[ValueType, list[Any]]]
"""The entity key columns of a request, in the caller's order: join key -> (type, values as
sent: timestamps as µs)."""

STATUS_SUFFIX = "__status"
EVENT_TIMESTAMP_SUFFIX = "__event_timestamp"

_STATUS_NAMES = {
    number: name.removeprefix("VALUE_STATUS_") for name, number in types_pb2.ValueStatus.items()
}
_UTC_MICROS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class FeatureValues:
    """One feature's served values, one entry per entity row.

    Attributes:
        name: ``view:feature``.
        type: The feature's type.
        values: The value where the status is PRESENT, else None (a stale value is in
            ``stale_values``, never here). A timestamp feature's values are UTC datetimes.
        statuses: Why each row has or lacks a value.
        event_timestamps: Event time of the stored row (a UTC datetime), None if no row.

    A timestamp outside datetime's years 1-9999 is given as its raw µs since the epoch.
        stale_values: Values of rows whose status is OUTSIDE_MAX_AGE, None elsewhere.
    """

    name: str
    type: ValueType
    values: list[Any]
    statuses: list[Status]
    event_timestamps: list[datetime | int | None]
    stale_values: list[Any]


class OnlineFeatures:
    """The answer to a feature request: the entity key columns as sent, then named, typed
    feature columns in request order, one row per entity row."""

    def __init__(
        self, features: list[FeatureValues], row_count: int, entities: EntityKeys | None = None
    ) -> None:
        self.features = features
        self.row_count = row_count
        self.entities: dict[str, tuple[ValueType, list[Any]]] = {
            name: (kind, _python_values(kind, values))
            for name, (kind, values) in (entities or {}).items()
        }
        self._by_name = {f.name: f for f in features}

    def __getitem__(self, name: str) -> FeatureValues:
        return self._by_name[name]

    def __iter__(self) -> Iterator[FeatureValues]:
        return iter(self.features)

    def __len__(self) -> int:
        return self.row_count

    @property
    def names(self) -> list[str]:
        """The feature names (``view:feature``), in request order."""
        return [f.name for f in self.features]

    def to_dict(
        self, *, include_status: bool = False, include_event_timestamps: bool = False
    ) -> dict[str, list[Any]]:
        """Column name -> values: the entity key columns, then each feature (None where not
        PRESENT) and, on request, its ``<name>__status`` and ``<name>__event_timestamp``."""
        out: dict[str, list[Any]] = {name: values for name, (_, values) in self.entities.items()}
        for f in self.features:
            out[f.name] = f.values
            if include_status:
                out[f.name + STATUS_SUFFIX] = f.statuses
            if include_event_timestamps:
                out[f.name + EVENT_TIMESTAMP_SUFFIX] = f.event_timestamps
        return out

    def to_arrow(
        self, *, include_status: bool = False, include_event_timestamps: bool = False
    ) -> pa.Table:
        """A pyarrow Table of ``to_dict``'s columns, each of its declared Arrow type."""
        types = {name: kind.arrow_type for name, (kind, _) in self.entities.items()}
        for f in self.features:
            types[f.name] = f.type.arrow_type
            types[f.name + STATUS_SUFFIX] = pa.string()
            types[f.name + EVENT_TIMESTAMP_SUFFIX] = _UTC_MICROS
        columns = self.to_dict(
            include_status=include_status, include_event_timestamps=include_event_timestamps
        )
        return pa.table({name: pa.array(values, types[name]) for name, values in columns.items()})

    def to_pandas(
        self, *, include_status: bool = False, include_event_timestamps: bool = False
    ) -> pd.DataFrame:
        """A pandas DataFrame of ``to_dict``'s columns (like Feast's ``to_df()``).

        Integer and boolean columns are pandas' nullable ``Int64``, ``Int32`` and
        ``boolean``, whether or not a value is missing this time (pandas' own choice, float64
        with NaN, would change large integers and make the dtype depend on the data);
        timestamps are ``datetime64[us, UTC]``; list features hold Python lists.

        Raises:
            ImportError: pandas is not installed (``pip install 'ferry-features[pandas]'``).
        """
        pd = _import_pandas()
        table = self.to_arrow(
            include_status=include_status, include_event_timestamps=include_event_timestamps
        )
        frame = table.to_pandas(types_mapper=_nullable_types(pd).get)
        for name in table.column_names:
            if pa.types.is_list(table.schema.field(name).type):
                frame[name] = pd.Series(table[name].to_pylist(), dtype=object, index=frame.index)
        return frame


def _import_pandas() -> Any:
    try:
        import pandas
    except ImportError as err:
        raise ImportError(
            "OnlineFeatures.to_pandas needs pandas, which a base install of Ferry leaves out: "
            "pip install 'ferry-features[pandas]' (or use to_arrow() / to_dict())"
        ) from err
    return pandas


def _nullable_types(pd: Any) -> dict[pa.DataType, Any]:
    """Arrow types -> pandas extension dtypes that keep a missing value apart from a number."""
    return {
        pa.int64(): pd.Int64Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }


def _python_values(kind: ValueType, raw: list[Any]) -> list[Any]:
    """Wire values as Python values of ``kind``: timestamps (µs) become UTC datetimes."""
    if kind is not ValueType.TIMESTAMP:
        return raw
    return [None if micros is None else _instant(micros) for micros in raw]


def _instant(micros: int) -> datetime | int:
    try:
        return micros_to_datetime(micros)
    except OverflowError:  # past year 9999: no datetime holds it; the raw µs stand in
        return micros


def decode_online_features(
    response: serving_pb2.GetOnlineFeaturesResponse | serving_pb2.GetModelFeaturesResponse,
    entities: EntityKeys | None = None,
) -> OnlineFeatures:
    """The result of GetOnlineFeatures (or the features of GetModelFeatures), with the
    request's ``entities`` as its key columns."""
    features = []
    for column in response.features:
        kind = column_type(column.values) or TYPE_OF_FIELD["int64_values"]
        raw = _python_values(kind, column_values(column.values))
        statuses = [_STATUS_NAMES[s] for s in column.statuses]
        times = column.event_timestamp_micros
        features.append(
            FeatureValues(
                name=column.name,
                type=kind,
                values=[v if s == "PRESENT" else None for v, s in zip(raw, statuses, strict=True)],
                statuses=statuses,
                event_timestamps=[_instant(t) if t else None for t in times],
                stale_values=[
                    v if s == "OUTSIDE_MAX_AGE" else None
                    for v, s in zip(raw, statuses, strict=True)
                ],
            )
        )
    return OnlineFeatures(features, int(response.row_count), entities)

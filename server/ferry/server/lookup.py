"""Serving one feature request: one store round trip, then typed columns with statuses.

Status of each (row, feature), decided at request time:

    no stored row                                  NOT_FOUND        (zero value, ts 0)
    the feature's value in the row is null         NULL_VALUE       (zero value), any age
    row's event time <= now - ttl                  OUTSIDE_MAX_AGE  (the stale value is sent)
    otherwise                                      PRESENT
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ferry.api.types.v1 import types_pb2
from ferry.core.keys import KeyValue
from ferry.server.batcher import Reader
from ferry.server.catalog import FeaturePlan
from ferry.server.entities import slot_keys
from ferry.stores.base import ReadRequest
from ferry.wire.columns import PROTO_TYPE, fill_column

PRESENT = types_pb2.VALUE_STATUS_PRESENT
NULL_VALUE = types_pb2.VALUE_STATUS_NULL_VALUE
NOT_FOUND = types_pb2.VALUE_STATUS_NOT_FOUND
OUTSIDE_MAX_AGE = types_pb2.VALUE_STATUS_OUTSIDE_MAX_AGE


async def read_features(
    store: Reader, plan: FeaturePlan, entities: Mapping[str, list[KeyValue]]
) -> list[types_pb2.FeatureColumn]:
    """Read every view of the plan in one store call and build the response columns."""
    requests = [ReadRequest(slot.table, slot_keys(slot, entities)) for slot in plan.slots]
    stored = await store.read(requests)
    now = time.time_ns() // 1000
    columns: list[types_pb2.FeatureColumn] = [None] * len(plan.names)  # type: ignore[list-item]
    for slot, found in zip(plan.slots, stored, strict=True):
        ttl = slot.view.ttl_micros
        decode = slot.codec.decode
        base: list[types_pb2.ValueStatus.ValueType] = []
        times: list[int] = []
        values: list[Sequence[Any] | None] = []
        for data in found:
            if data is None:
                base.append(NOT_FOUND)
                times.append(0)
                values.append(None)
                continue
            row = decode(data)
            stale = ttl is not None and row.event_timestamp <= now - ttl
            base.append(OUTSIDE_MAX_AGE if stale else PRESENT)
            times.append(row.event_timestamp)
            values.append(row.values)
        for pick, position in zip(slot.picks, slot.outputs, strict=True):
            kind = plan.types[position]
            column = types_pb2.FeatureColumn(name=plan.names[position], type=PROTO_TYPE[kind])
            cells = [None if v is None else v[pick] for v in values]
            statuses = [
                NULL_VALUE if cell is None and status != NOT_FOUND else status
                for status, cell in zip(base, cells, strict=True)
            ]
            fill_column(column.values, kind, cells)
            column.statuses.extend(statuses)
            column.event_timestamp_micros.extend(times)
            columns[position] = column
    return columns

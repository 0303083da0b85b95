"""Serving one feature request: one store round trip, then typed columns with statuses.

Status of each (row, feature), decided at request time:

    no stored row                                  NOT_FOUND        (zero value, ts 0)
    the feature's value in the row is null         NULL_VALUE       (zero value), any age
    row's event time <= now - ttl                  OUTSIDE_MAX_AGE  (the stale value is sent)
    otherwise                                      PRESENT
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from ferry.api.types.v1 import types_pb2
from ferry.core.codec import RowBlock
from ferry.core.keys import KeyValue
from ferry.server.batcher import Reader
from ferry.server.catalog import FeaturePlan
from ferry.server.entities import slot_keys
from ferry.stores.base import ReadRequest
from ferry.wire import packed

PRESENT = types_pb2.VALUE_STATUS_PRESENT
NULL_VALUE = types_pb2.VALUE_STATUS_NULL_VALUE
NOT_FOUND = types_pb2.VALUE_STATUS_NOT_FOUND
OUTSIDE_MAX_AGE = types_pb2.VALUE_STATUS_OUTSIDE_MAX_AGE
_BASE_STATUS = np.array([NOT_FOUND, PRESENT], np.uint8)  # indexed by "a row was stored"


async def read_features(
    store: Reader, plan: FeaturePlan, entities: Mapping[str, list[KeyValue]]
) -> list[bytes]:
    """Read every view of the plan in one store call; the response's ``FeatureColumn``
    messages, encoded, in request order.

    Each view's rows are decoded column by column (``RowCodec.decode_block``) and written
    to the wire from arrays (``ferry.wire.packed``): no Python object per value.
    """
    requests = [ReadRequest(slot.table, slot_keys(slot, entities)) for slot in plan.slots]
    stored = await store.read(requests)
    now = time.time_ns() // 1000
    columns: list[bytes] = [b""] * len(plan.names)
    for slot, found in zip(plan.slots, stored, strict=True):
        block = slot.codec.decode_block(found)
        base = _BASE_STATUS[block.present.view(np.uint8)]
        ttl = slot.view.ttl_micros
        if ttl is not None:
            base[block.present & (block.event_timestamps <= now - ttl)] = OUTSIDE_MAX_AGE
        timestamps = packed.timestamps_field(block.event_timestamps)
        # A null is NULL_VALUE whatever the row's age; no row stays NOT_FOUND.
        null_values = block.nulls & block.present[:, None]
        has_nulls = cast(list[bool], null_values.any(axis=0).tolist())
        common = base.tobytes()
        for pick, position in zip(slot.picks, slot.outputs, strict=True):
            statuses = common
            if has_nulls[pick]:
                statuses = np.where(null_values[:, pick], NULL_VALUE, base).astype(np.uint8)
                statuses = statuses.tobytes()
            columns[position] = plan.encoders[position].encode(
                _values(block, pick), statuses, timestamps
            )
    return columns


def _values(block: RowBlock, pick: int) -> Any:
    if pick in block.fixed:
        return block.fixed[pick]
    if pick in block.strings:
        return block.strings[pick]
    return block.lists[pick]

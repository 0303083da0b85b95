"""Serving one feature request: one store round trip, then typed columns with statuses.

Status of each (row, feature), decided at request time:

    no stored row                                  NOT_FOUND        (zero value, ts 0)
    the feature's value in the row is null         NULL_VALUE       (zero value), any age
    row's event time <= now - ttl                  OUTSIDE_MAX_AGE  (the stale value is sent)
    otherwise                                      PRESENT
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, cast

import numpy as np

from ferry.api.types.v1 import types_pb2
from ferry.core.codec import RowBlock
from ferry.core.errors import InvalidValueError, StoreError, UnknownSchemaError
from ferry.core.keys import KeyValue, decode_key
from ferry.server.errors import CorruptStoredRowError
from ferry.server.serving.catalog import FeaturePlan, ViewSlot
from ferry.server.serving.entities import slot_keys
from ferry.stores.base import Reader, ReadRequest
from ferry.stores.schemas import learn_schemas, unknown_schemas
from ferry.wire import packed

log = logging.getLogger("ferry.server")
PRESENT = types_pb2.VALUE_STATUS_PRESENT
NULL_VALUE = types_pb2.VALUE_STATUS_NULL_VALUE
NOT_FOUND = types_pb2.VALUE_STATUS_NOT_FOUND
OUTSIDE_MAX_AGE = types_pb2.VALUE_STATUS_OUTSIDE_MAX_AGE
_BASE_STATUS = np.array([NOT_FOUND, PRESENT], np.uint8)  # indexed by "a row was stored"


class ServedRecorder(Protocol):
    """Told what each answer served (``ferry.server.metrics.Metrics`` is one)."""

    def served(self, view: str, rows: int, statuses: dict[int, int], ages_s: Any) -> None:
        """One view's part of an answer: ``rows`` entity rows, values by status, and the
        ages in seconds of the rows served PRESENT (a numpy array or a short list)."""


async def read_features(
    store: Reader,
    plan: FeaturePlan,
    entities: Mapping[str, list[KeyValue]],
    recorder: ServedRecorder | None = None,
) -> list[bytes]:
    """Read every view of the plan in one store call; the response's ``FeatureColumn``
    messages, encoded, in request order.

    Each view's rows are decoded column by column (``RowCodec.decode_block``) and written
    to the wire from arrays (``ferry.wire.packed``), with no Python object per value; a
    view with few rows goes through Python values instead (see ``SMALL_BLOCK``).
    """
    requests = [ReadRequest(slot.table, slot_keys(slot, entities)) for slot in plan.slots]
    stored = await store.read(requests)
    now = time.time_ns() // 1000
    columns: list[bytes] = [b""] * len(plan.names)
    measure = recorder is not None
    for slot, request, found in zip(plan.slots, requests, stored, strict=True):
        try:
            served = encode_slot(plan, slot, found, now, columns, measure)
        except UnknownSchemaError:
            # Rows of another schema of the view, met for the first time: learn every one
            # this answer holds (one store read), then encode again.
            with _rows_named(slot, request.keys, found):
                unknown = unknown_schemas(slot.codec, found)
                await learn_schemas(store, slot.table, slot.codec, unknown)
                served = encode_slot(plan, slot, found, now, columns, measure)
        except Exception as err:
            raise _corrupt_row(slot, request.keys, found) or err from err
        if recorder is not None and served is not None:
            recorder.served(slot.view.name, len(found), *served)
    return columns


@contextmanager
def _rows_named(slot: ViewSlot, keys: Sequence[bytes], found: list[bytes | None]) -> Iterator[None]:
    """Report a failure to decode the slot's rows as the first row that does not decode; a
    failure of the store (reading a schema) as itself."""
    try:
        yield
    except StoreError:
        raise
    except Exception as err:
        raise _corrupt_row(slot, keys, found) or err from err


def _corrupt_row(
    slot: ViewSlot, keys: Sequence[bytes], found: list[bytes | None]
) -> CorruptStoredRowError | None:
    """The first stored row of a slot that does not decode, as an error naming its view and
    entity; None when every row decodes (the failure was elsewhere)."""
    for key, row in zip(keys, found, strict=True):
        if row is None:
            continue
        try:
            slot.codec.decode(row)
        except Exception as err:
            try:
                entity = ", ".join(map(str, decode_key(key)))
            except InvalidValueError:
                entity = key.hex()
            log.error(
                "stored row of view %r, entity (%s) does not decode: %s",
                slot.view.name,
                entity,
                err,
            )
            return CorruptStoredRowError(
                f"the stored row of view {slot.view.name!r} for entity ({entity}) does not "
                "decode; it is not served. Rewrite it (materialize or push), or remove it with "
                "ferry delete-rows",
                feature_view=slot.view.name,
                entity=entity,
            )
    return None


Served = tuple[dict[int, int], Any]
"""What one view served: values by status, and the ages (s) of the rows served PRESENT."""


def encode_slot(
    plan: FeaturePlan,
    slot: ViewSlot,
    found: list[bytes | None],
    now: int,
    out: list[bytes],
    measure: bool = False,
) -> Served | None:
    """Write the response columns of one view's stored rows (None where no row) into
    ``out`` at the plan's positions, with statuses as of ``now`` (µs); with ``measure``,
    also return what was served (for metrics: counted only when asked)."""
    if len(found) < SMALL_BLOCK:
        return encode_slot_values(plan, slot, found, now, out, measure)
    return encode_slot_arrays(plan, slot, found, now, out, measure)


SMALL_BLOCK = 16
"""Below this many rows a view's rows are decoded one by one into Python values. Numpy
pays per call: tens of calls per view cost more than a few rows' worth of Python, and in a
grpc.aio server each call may hand the GIL to gRPC's poller thread and wait to get it
back (measured: at batch 1 and 10 the array path cost 50 µs more per call than the Python
one, at batch 100 300 µs less)."""


def encode_slot_values(
    plan: FeaturePlan,
    slot: ViewSlot,
    found: list[bytes | None],
    now: int,
    out: list[bytes],
    measure: bool = False,
) -> Served | None:
    """``encode_slot`` through Python values: cheaper for few rows (``SMALL_BLOCK``)."""
    decode = slot.codec.decode
    rows = [None if data is None else decode(data) for data in found]
    ttl = slot.view.ttl_micros
    oldest = None if ttl is None else now - ttl
    base = [
        NOT_FOUND
        if row is None
        else (OUTSIDE_MAX_AGE if oldest is not None and row.event_timestamp <= oldest else PRESENT)
        for row in rows
    ]
    timestamps = packed.timestamps_field(
        [0 if row is None else row.event_timestamp for row in rows]
    )
    counts: dict[int, int] = {int(s): 0 for s in (PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE)}
    for pick, position in zip(slot.picks, slot.outputs, strict=True):
        cells = [None if row is None else row.values[pick] for row in rows]
        # A null is NULL_VALUE whatever the row's age; no row stays NOT_FOUND.
        statuses = bytes(
            [
                NULL_VALUE if cell is None and status != NOT_FOUND else status
                for cell, status in zip(cells, base, strict=True)
            ]
        )
        if measure:
            for status in counts:
                counts[status] += statuses.count(status)
        values = packed.small_column(plan.types[position], cells)
        out[position] = plan.encoders[position].encode(values, statuses, timestamps)
    if not measure:
        return None
    ages = [
        (now - row.event_timestamp) / 1e6
        for row, status in zip(rows, base, strict=True)
        if row is not None and status == PRESENT
    ]
    return counts, ages


def encode_slot_arrays(
    plan: FeaturePlan,
    slot: ViewSlot,
    found: list[bytes | None],
    now: int,
    out: list[bytes],
    measure: bool = False,
) -> Served | None:
    """``encode_slot`` through arrays (``RowCodec.decode_block``): cheaper for many rows."""
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
            statuses = np.where(null_values[:, pick], NULL_VALUE, base).astype(np.uint8).tobytes()
        out[position] = plan.encoders[position].encode(_values(block, pick), statuses, timestamps)
    if not measure:
        return None
    return _array_counts(slot, base, null_values), _array_ages(block, base, now)


def _array_counts(slot: ViewSlot, base: np.ndarray, null_values: np.ndarray) -> dict[int, int]:
    """Values by status over the slot's features, from the rows' statuses and nulls."""
    features = len(slot.picks)
    nulls = null_values[:, list(slot.picks)]
    rows_by_status = np.bincount(base, minlength=OUTSIDE_MAX_AGE + 1).tolist()
    present_nulls = int(nulls[base == PRESENT].sum())
    stale_nulls = int(nulls[base == OUTSIDE_MAX_AGE].sum())
    return {
        PRESENT: rows_by_status[PRESENT] * features - present_nulls,
        NULL_VALUE: present_nulls + stale_nulls,
        NOT_FOUND: rows_by_status[NOT_FOUND] * features,
        OUTSIDE_MAX_AGE: rows_by_status[OUTSIDE_MAX_AGE] * features - stale_nulls,
    }


def _array_ages(block: RowBlock, base: np.ndarray, now: int) -> Any:
    return (now - block.event_timestamps[base == PRESENT]) / 1e6


def _values(block: RowBlock, pick: int) -> Any:
    if pick in block.fixed:
        return block.fixed[pick]
    if pick in block.strings:
        return block.strings[pick]
    return block.lists[pick]

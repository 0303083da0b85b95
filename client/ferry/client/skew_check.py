"""The skew check: what a server serves against what the offline store says it should.

For sampled entities of a view and a time ``at`` (normally the view's materialization
watermark), the expected values are the training frame at ``at``; the served ones come from
GetOnlineFeatures. A served value is correct when it comes from the same row (same event
time) and is equal. An entity without an as-of row at ``at`` may be NOT_FOUND or, if the
store still holds an older row, OUTSIDE_MAX_AGE with a row older than the TTL at ``at``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from ferry.client._clients import FerryClient
from ferry.client.training import EVENT_TIMESTAMP_SUFFIX, get_training_frame
from ferry.core.repo import FeatureRepo, FeatureView
from ferry.core.timestamps import datetime_to_micros
from ferry.stores.offline import open_source

_CHUNK = 1_000


@dataclass(frozen=True)
class Mismatch:
    """One served value that differs from the offline as-of value."""

    view: str
    feature: str
    entity: dict[str, Any]
    served: dict[str, Any]
    expected: dict[str, Any]


def sample_keys(repo: FeatureRepo, view: FeatureView, count: int, seed: int) -> pa.Table:
    """Up to ``count`` distinct entity keys of a view's source, drawn at random."""
    keys = open_source(repo, view).to_table(columns=list(view.join_key_names))
    keys = keys.drop_null().group_by(list(view.join_key_names), use_threads=False).aggregate([])
    if keys.num_rows <= count:
        return keys
    picks = sorted(random.Random(seed).sample(range(keys.num_rows), count))
    return keys.take(pa.array(picks))


def verify_view(
    client: FerryClient, repo: FeatureRepo, view: FeatureView, keys: pa.Table, at: int
) -> tuple[int, list[Mismatch]]:
    """Compare served and expected values of every feature of ``view`` for ``keys``.

    Returns:
        The number of values compared, and the mismatches.
    """
    entities = keys.append_column(
        "event_timestamp", pa.array([at] * keys.num_rows, pa.timestamp("us", tz="UTC"))
    )
    refs = [f"{view.name}:{f.name}" for f in view.features]
    expected = get_training_frame(repo, entities, features=refs, include_event_timestamps=True)
    expected_times = expected[view.name + EVENT_TIMESTAMP_SUFFIX].to_pylist()
    mismatches: list[Mismatch] = []
    compared = 0
    for start in range(0, keys.num_rows, _CHUNK):
        chunk = keys.slice(start, _CHUNK)
        served = client.get_online_features(
            entities={k: chunk[k].to_pylist() for k in view.join_key_names}, features=refs
        )
        for feature in served:
            want = expected[feature.name].to_pylist()
            for i, status in enumerate(feature.statuses):
                row = start + i
                got = feature.values[i] if status != "OUTSIDE_MAX_AGE" else feature.stale_values[i]
                ok = _agrees(
                    view,
                    at,
                    status,
                    got,
                    feature.event_timestamps[i],
                    want[row],
                    expected_times[row],
                )
                compared += 1
                if not ok:
                    mismatches.append(
                        Mismatch(
                            view.name,
                            feature.name.split(":", 1)[1],
                            {k: chunk[k][i].as_py() for k in view.join_key_names},
                            {
                                "value": got,
                                "status": status,
                                "event_timestamp": feature.event_timestamps[i],
                            },
                            {"value": want[row], "event_timestamp": expected_times[row]},
                        )
                    )
    return compared, mismatches


def _agrees(
    view: FeatureView,
    at: int,
    status: str,
    value: Any,
    event: datetime | int | None,
    want: Any,
    want_event: datetime | None,
) -> bool:
    if want_event is None:
        if status == "NOT_FOUND":
            return True
        # An older row the store still keeps is fine if it really is past the TTL at `at`.
        return (
            view.ttl_micros is not None
            and event is not None
            and _micros(event) <= at - view.ttl_micros
        )
    return status != "NOT_FOUND" and event == want_event and _equal(value, want)


def _micros(instant: datetime | int) -> int:
    return datetime_to_micros(instant) if isinstance(instant, datetime) else instant


def _equal(a: Any, b: Any) -> bool:
    """Served ``a`` against expected ``b``: NaN equals NaN (the same stored value), and
    instants compare as instants (past year 9999 one side may be a µs count)."""
    if isinstance(a, Sequence) and not isinstance(a, str | bytes):
        return (
            isinstance(b, Sequence)
            and len(a) == len(b)
            and all(_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(b, datetime):
        b = datetime_to_micros(b)
    if isinstance(a, datetime):
        a = datetime_to_micros(a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)

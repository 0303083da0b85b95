"""GetOnlineFeatures through real gRPC on loopback, against SQLite and Redis, checked value by
value against the brute-force as-of oracle at the materialization's end."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ferry.client import AsyncFerryClient, OnlineFeatures
from ferry.core import FeatureRepo, encode_key
from ferry.core.timestamps import datetime_to_micros
from ferry.server import FerryServer
from tests.e2e.fraud import as_stored, oracle
from tests.server.conftest import END


def expected_cell(
    repo: FeatureRepo,
    ref: str,
    keys: tuple[Any, ...],
    truth: dict[str, dict[bytes, dict[str, Any]]],
    now: int,
) -> tuple[Any, str, int]:
    view_name, feature_name = ref.split(":")
    view = repo.view(view_name)
    row = truth[view_name].get(encode_key(list(keys)))
    if row is None:
        return None, "NOT_FOUND", 0
    event = row[view.source.timestamp_field]
    value = as_stored(view.feature(feature_name).type, row[feature_name])
    if value is None:
        return None, "NULL_VALUE", event
    if view.ttl_micros is not None and event <= now - view.ttl_micros:
        return value, "OUTSIDE_MAX_AGE", event
    return value, "PRESENT", event


def check_against_oracle(
    repo: FeatureRepo,
    result: OnlineFeatures,
    entities: dict[str, list[Any]],
    before: int,
    after: int,
) -> dict[str, int]:
    truth = {name: oracle(repo, view, END) for name, view in repo.views.items()}
    seen: dict[str, int] = {}
    for feature in result:
        view = repo.view(feature.name.split(":")[0])
        for i in range(result.row_count):
            keys = tuple(entities[k][i] for k in view.join_key_names)
            got_value = (
                feature.values[i] if feature.values[i] is not None else feature.stale_values[i]
            )
            event = feature.event_timestamps[i]
            got = (got_value, feature.statuses[i], datetime_to_micros(event) if event else 0)
            # A row whose age crosses the TTL during the call may show either status.
            allowed = [expected_cell(repo, feature.name, keys, truth, t) for t in (before, after)]
            assert got in allowed, (feature.name, keys, got, allowed)
            seen[feature.statuses[i]] = seen.get(feature.statuses[i], 0) + 1
    return seen


async def test_every_served_value_matches_the_oracle(
    server: FerryServer, served_repo: FeatureRepo, served_data: Any
) -> None:
    transactions = pq.read_table(served_data / "transactions.parquet")
    entities: dict[str, list[Any]] = {
        "user_id": [*transactions["user_id"].to_pylist(), 424242, 1],
        "merchant_id": [*transactions["merchant_id"].to_pylist(), "m0000001", "nope"],
    }
    async with AsyncFerryClient(f"127.0.0.1:{server.port}", timeout_s=30) as client:
        before = time.time_ns() // 1000
        result = await client.get_online_features(entities=entities, feature_service="fraud_v2")
        after = time.time_ns() // 1000
    assert result.names == [
        *(f"user_stats:{f.name}" for f in served_repo.view("user_stats").features),
        "merchant_stats:chargeback_rate",
        "user_merchant_stats:n_txn_90d",
        "user_merchant_stats:last_amount",
    ]
    assert result.row_count == len(entities["user_id"])
    seen = check_against_oracle(served_repo, result, entities, before, after)
    assert set(seen) == {"PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"}, seen
    # Re-stated users (txn_count_7d + 1000) are served with their correction.
    counts = result["user_stats:txn_count_7d"]
    assert any(v is not None and v >= 1000 for v in counts.values + counts.stale_values)


async def test_refs_keep_request_order_and_expand_stars(
    server: FerryServer, served_repo: FeatureRepo
) -> None:
    entities = {"merchant_id": ["m0000001", "m0000002"], "user_id": [1, 2]}
    refs = ["merchant_stats:category", "user_stats:*", "merchant_stats:txn_count_1d"]
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        before = time.time_ns() // 1000
        result = await client.get_online_features(entities=entities, features=refs)
        after = time.time_ns() // 1000
    assert result.names == [
        "merchant_stats:category",
        *(f"user_stats:{f.name}" for f in served_repo.view("user_stats").features),
        "merchant_stats:txn_count_1d",
    ]
    check_against_oracle(served_repo, result, entities, before, after)
    table = result.to_arrow(include_status=True, include_event_timestamps=True)
    assert table.num_rows == 2
    assert table.column_names[:2] == list(entities)
    assert table.schema.field("user_stats:risk_embedding").type == pa.list_(pa.float32())
    assert table.schema.field("merchant_stats:category__status").type == pa.string()
    assert table.schema.field("merchant_stats:category__event_timestamp").type == pa.timestamp(
        "us", tz="UTC"
    )
    assert "merchant_stats:category__status" not in result.to_arrow().column_names


async def test_concurrent_requests_are_served_concurrently(server: FerryServer) -> None:
    import asyncio

    async with AsyncFerryClient(f"127.0.0.1:{server.port}", timeout_s=10) as client:
        results = await asyncio.gather(
            *(
                client.get_online_features(entities={"user_id": [i]}, features=["user_stats:*"])
                for i in range(1, 201)
            )
        )
    assert all(r.row_count == 1 for r in results)

"""Training-serving consistency: for entities at the end of a materialization, the training
frame built offline equals what the server serves."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ferry.client import AsyncFerryClient, OnlineFeatures
from ferry.client.training import EVENT_TIMESTAMP_SUFFIX, get_training_frame
from ferry.core import FeatureRepo
from ferry.server import FerryServer
from tests.server.conftest import END


async def test_training_frame_equals_served_features(
    server: FerryServer, served_repo: FeatureRepo, served_data: Path
) -> None:
    await check_training_equals_serving(server.port, served_repo, served_data)


async def check_training_equals_serving(
    port: int, repo: FeatureRepo, served_data: Path
) -> OnlineFeatures:
    """For every (user, merchant) pair of the transactions, at END: the training frame of
    ``repo`` equals what the server on ``port`` serves (fraud_v2). Returns what was served."""
    pairs = pq.read_table(served_data / "transactions.parquet").select(["user_id", "merchant_id"])
    pairs = pairs.group_by(["user_id", "merchant_id"]).aggregate([])
    entities = pairs.append_column(
        "event_timestamp", pa.array([END] * pairs.num_rows, pa.timestamp("us", tz="UTC"))
    )
    frame = get_training_frame(
        repo, entities, feature_service="fraud_v2", include_event_timestamps=True
    )
    async with AsyncFerryClient(f"127.0.0.1:{port}", timeout_s=30) as client:
        served = await client.get_online_features(
            entities={
                "user_id": pairs["user_id"].to_pylist(),
                "merchant_id": pairs["merchant_id"].to_pylist(),
            },
            feature_service="fraud_v2",
        )
    assert_served_equals_training(served, frame, pairs.num_rows)
    return served


def assert_served_equals_training(served: OnlineFeatures, frame: pa.Table, rows: int) -> None:
    """Every served value (the stale one where OUTSIDE_MAX_AGE) and its event time equal
    the training frame's, row for row."""
    compared = 0
    for feature in served:
        offline = frame[feature.name].to_pylist()
        times = frame[feature.name.split(":")[0] + EVENT_TIMESTAMP_SUFFIX].to_pylist()
        for i, status in enumerate(feature.statuses):
            online = feature.values[i] if status != "OUTSIDE_MAX_AGE" else feature.stale_values[i]
            assert online == offline[i], (feature.name, i, status)
            assert feature.event_timestamps[i] == times[i], (feature.name, i)
            compared += 1
    assert compared == rows * len(served.names)

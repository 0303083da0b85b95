"""PushFeatures: validated against the view, written through the conditional writer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from ferry.client import AsyncFerryClient, InvalidArgumentError, NotFoundError, RpcError
from ferry.core import FeatureRepo
from ferry.core.timestamps import now_micros
from ferry.server import FerryServer
from tests.server.conftest import load_store


def user_row(user_id: int, at: datetime, count: int, **extra: Any) -> dict[str, Any]:
    return {"user_id": user_id, "event_timestamp": at, "txn_count_7d": count, **extra}


async def test_a_push_is_visible_to_the_next_read_and_never_regresses(server: FerryServer) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        pushed = await client.push(
            "user_stats",
            [
                user_row(1, now, 77, last_country="IS", risk_embedding=[0.5, 1.5]),
                user_row(777_777, now, 5),
            ],
        )
        assert (pushed.rows_written, pushed.rows_skipped_not_newer) == (2, 0)
        result = await client.get_online_features(
            entities={"user_id": [1, 777_777]},
            features=[
                "user_stats:txn_count_7d",
                "user_stats:last_country",
                "user_stats:risk_embedding",
                "user_stats:avg_txn_amount",
            ],
        )
        assert result["user_stats:txn_count_7d"].values == [77, 5]
        assert result["user_stats:last_country"].values == ["IS", None]
        assert result["user_stats:risk_embedding"].values == [[0.5, 1.5], None]
        assert result["user_stats:avg_txn_amount"].statuses == ["NULL_VALUE", "NULL_VALUE"]
        assert result["user_stats:txn_count_7d"].event_timestamps == [now] * 2

        older = await client.push("user_stats", [user_row(1, now.replace(year=2020), 1)])
        assert (older.rows_written, older.rows_skipped_not_newer) == (0, 1)
        again = await client.get_online_features(
            entities={"user_id": [1]}, features=["user_stats:txn_count_7d"]
        )
        assert again["user_stats:txn_count_7d"].values == [77]


async def test_duplicate_keys_in_one_push_keep_the_newest(server: FerryServer) -> None:
    now = now_micros()
    table = pa.table(
        {
            "user_id": pa.array([5, 5, 5], pa.int64()),
            "event_timestamp": pa.array([now - 3, now - 1, now - 2], pa.timestamp("us", tz="UTC")),
            "txn_count_7d": pa.array([1, 2, 3], pa.int64()),
        }
    )
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        pushed = await client.push("user_stats", table)
        assert (pushed.rows_written, pushed.rows_skipped_not_newer) == (1, 2)
        result = await client.get_online_features(
            entities={"user_id": [5]}, features=["user_stats:txn_count_7d"]
        )
    assert result["user_stats:txn_count_7d"].values == [2]


NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("view", "rows", "error", "reason", "message"),
    [
        (
            "nope",
            [user_row(1, NOW, 1)],
            NotFoundError,
            "UNKNOWN_FEATURE_VIEW",
            "unknown feature view 'nope'",
        ),
        (
            "user_stats",
            [user_row(1, NOW, 1, colour="red")],
            InvalidArgumentError,
            "UNKNOWN_COLUMN",
            "column 'colour' is not a join key, timestamp field or feature of view 'user_stats'",
        ),
        (
            "user_stats",
            [{"user_id": 1, "txn_count_7d": 1}],
            InvalidArgumentError,
            "MISSING_COLUMN",
            "lacks column 'event_timestamp' (timestamp field)",
        ),
        (
            "user_stats",
            [user_row(1, NOW, 1, last_country=3)],
            InvalidArgumentError,
            "WRONG_COLUMN_TYPE",
            "column 'last_country' (feature) is string, but holds int64",
        ),
        (
            "user_stats",
            [user_row(1, NOW, 1), user_row(2, datetime(9999, 12, 31, tzinfo=UTC), 1)],
            InvalidArgumentError,
            "FUTURE_TIMESTAMP",
            "row 1: 'event_timestamp' is 9999-12-31T00:00:00Z, later than the server's clock",
        ),
        (
            "user_stats",
            [user_row(1, NOW, 1, avg_txn_amount=1e40)],
            InvalidArgumentError,
            "INVALID_VALUE",
            "column 'avg_txn_amount' is float; 1e+40 does not fit",
        ),
        (
            "user_stats",
            [user_row(1, NOW, 1, risk_embedding=[0.5, -1e39])],
            InvalidArgumentError,
            "INVALID_VALUE",
            "column 'risk_embedding' is float; -1e+39 does not fit",
        ),
        (
            "user_stats",
            [user_row(1, NOW, 1, txn_count_7d=2.5)],
            InvalidArgumentError,
            "INVALID_VALUE",
            "column 'txn_count_7d' is int64; 2.5 is not an integer",
        ),
        (
            "user_stats",
            [{"user_id": "1", "event_timestamp": NOW}],
            InvalidArgumentError,
            "WRONG_COLUMN_TYPE",
            "column 'user_id' (join key) is int64, but holds string",
        ),
        (
            "user_stats",
            [user_row(1, NOW, 1), {"user_id": None, "event_timestamp": NOW}],
            InvalidArgumentError,
            "NULL_KEY",
            "column 'user_id' (join key) cannot hold nulls",
        ),
        (
            "merchant_stats",
            [{"merchant_id": "m1", "event_timestamp": NOW, "txn_count_1d": 1e20}],
            InvalidArgumentError,
            "INVALID_VALUE",
            "does not fit",
        ),
    ],
)
async def test_bad_pushes(
    server: FerryServer,
    view: str,
    rows: list[dict[str, Any]],
    error: type[RpcError],
    reason: str,
    message: str,
) -> None:
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(error) as caught:
            await client.push(view, rows)
    assert caught.value.reason == reason
    assert message in str(caught.value)


async def test_a_push_a_little_ahead_of_the_clock_is_taken(server: FerryServer) -> None:
    ahead = datetime.now(UTC) + timedelta(minutes=2)  # within the default 5 minutes
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        pushed = await client.push("user_stats", [user_row(31337, ahead, 5)])
    assert pushed.rows_written == 1


async def test_numbers_widen_where_they_fit(server: FerryServer) -> None:
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        pushed = await client.push(
            "merchant_stats",
            [
                {
                    "merchant_id": "m9",
                    "event_timestamp": NOW,
                    "chargeback_rate": 1,
                    "txn_count_1d": 3.0,
                }
            ],
        )
        assert pushed.rows_written == 1
        result = await client.get_online_features(
            entities={"merchant_id": ["m9"]},
            features=["merchant_stats:chargeback_rate", "merchant_stats:txn_count_1d"],
        )
    assert result.to_dict() == {
        "merchant_id": ["m9"],
        "merchant_stats:chargeback_rate": [1.0],
        "merchant_stats:txn_count_1d": [3],
    }


async def test_serving_continues_while_a_materialization_runs(
    server: FerryServer, served_repo: FeatureRepo, loaded_store: str
) -> None:
    stop = asyncio.Event()
    served = 0

    async def keep_reading() -> None:
        nonlocal served
        async with AsyncFerryClient(f"127.0.0.1:{server.port}", timeout_s=5) as client:
            while not stop.is_set():
                result = await client.get_online_features(
                    entities={"user_id": list(range(1, 51)), "merchant_id": ["m0000001"] * 50},
                    feature_service="fraud_v1",
                )
                assert result.row_count == 50
                served += 1
                await asyncio.sleep(0)

    reader = asyncio.create_task(keep_reading())
    for _ in range(3):
        await load_store(served_repo, loaded_store)
    stop.set()
    await reader
    assert served > 0

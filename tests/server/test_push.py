"""PushFeatures: validated against the view, written through the conditional writer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pyarrow as pa
import pytest

from ferry.api.serving.v1 import serving_pb2
from ferry.client import AsyncFerryClient, InvalidArgumentError, NotFoundError, RpcError
from ferry.core import FeatureRepo
from ferry.core.timestamps import now_micros
from ferry.server import FerryServer
from tests.server.conftest import load_store

USER_STATS = [
    "user_stats:txn_count_7d",
    "user_stats:txn_sum_30d",
    "user_stats:avg_txn_amount",
    "user_stats:last_country",
    "user_stats:is_premium",
    "user_stats:risk_embedding",
]
USER_FEATURES = [name.split(":")[1] for name in USER_STATS]


def user_row(user_id: int, at: datetime, count: int, **extra: Any) -> dict[str, Any]:
    """A whole user_stats row: features not given are None (pushed as null on purpose)."""
    nulls = dict.fromkeys(USER_FEATURES)
    return {**nulls, "user_id": user_id, "event_timestamp": at, "txn_count_7d": count, **extra}


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
        pushed = await client.push("user_stats", table, missing_features_are_null=True)
        assert (pushed.rows_written, pushed.rows_skipped_not_newer) == (1, 2)
        result = await client.get_online_features(
            entities={"user_id": [5]}, features=["user_stats:txn_count_7d"]
        )
    assert result["user_stats:txn_count_7d"].values == [2]


NOW = datetime.now(UTC)


def merchant_row(**values: Any) -> dict[str, Any]:
    nulls = dict.fromkeys(["chargeback_rate", "txn_count_1d", "category"])
    return {**nulls, "merchant_id": "m1", "event_timestamp": NOW, **values}


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
        ("user_stats", [], InvalidArgumentError, "NO_ROWS", "view 'user_stats' holds no rows"),
        (
            "user_stats",
            {"user_id": [], "event_timestamp": []},
            InvalidArgumentError,
            "NO_ROWS",
            "a push needs 1 to",
        ),
        (
            "merchant_stats",
            [merchant_row(txn_count_1d=1e20)],
            InvalidArgumentError,
            "INVALID_VALUE",
            "does not fit",
        ),
    ],
)
async def test_bad_pushes(
    server: FerryServer,
    view: str,
    rows: list[dict[str, Any]] | dict[str, list[Any]],
    error: type[RpcError],
    reason: str,
    message: str,
) -> None:
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(error) as caught:
            await client.push(view, rows)
    assert caught.value.reason == reason
    assert message in str(caught.value)


async def test_a_push_that_leaves_features_out_is_refused_and_writes_nothing(
    server: FerryServer,
) -> None:
    """The README's own push of one feature would have blanked the other five."""
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        before = await client.get_online_features(entities={"user_id": [1]}, features=USER_STATS)
        assert before["user_stats:last_country"].statuses != ["NOT_FOUND"]  # a row to keep
        row = {"user_id": 1, "event_timestamp": datetime.now(UTC), "txn_count_7d": 19}
        with pytest.raises(InvalidArgumentError) as caught:
            await client.push("user_stats", [row])
        after = await client.get_online_features(entities={"user_id": [1]}, features=USER_STATS)
    assert caught.value.reason == "MISSING_FEATURES"
    assert caught.value.metadata["features"] == (
        "txn_sum_30d,avg_txn_amount,last_country,is_premium,risk_embedding"
    )
    assert "missing_features_are_null" in str(caught.value)
    assert after.to_dict(include_status=True) == before.to_dict(include_status=True)


async def test_nulls_pushed_on_purpose_are_stored_as_null(server: FerryServer) -> None:
    """Either way of saying so: None values (a column null in every row goes as null rows
    alone) or missing_features_are_null for the features left out."""
    now = datetime.now(UTC)
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        by_value = await client.push("user_stats", [user_row(2, now, 19)])
        by_flag = await client.push(
            "user_stats",
            [{"user_id": 3, "event_timestamp": now, "txn_count_7d": 20}],
            missing_features_are_null=True,
        )
        result = await client.get_online_features(entities={"user_id": [2, 3]}, features=USER_STATS)
    assert (by_value.rows_written, by_flag.rows_written) == (1, 1)
    assert result["user_stats:txn_count_7d"].values == [19, 20]
    for name in USER_STATS[1:]:
        assert result[name].statuses == ["NULL_VALUE", "NULL_VALUE"], name


async def test_null_rows_alone_must_name_every_row(server: FerryServer) -> None:
    request = serving_pb2.PushFeaturesRequest(view="user_stats", missing_features_are_null=True)
    request.columns["user_id"].int64_values.values.extend([1, 2])
    request.columns["event_timestamp"].timestamp_values.micros.extend([now_micros()] * 2)
    request.null_rows["last_country"].indexes.append(1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        push = channel.unary_unary(
            "/ferry.api.serving.v1.ServingService/PushFeatures",
            request_serializer=serving_pb2.PushFeaturesRequest.SerializeToString,
            response_deserializer=serving_pb2.PushFeaturesResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await push(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'last_country' comes only as null rows, which must then name all 2" in str(
        caught.value.details()
    )


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
                    "category": "toys",
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

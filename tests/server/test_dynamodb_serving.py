"""Serving from DynamoDB loaded from S3 (both on moto): the training frame built from S3
equals what the server serves, and ``ferry verify`` finds no skew."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from aiobotocore.session import get_session

from ferry.client import AsyncFerryClient, InvalidArgumentError, RpcError
from ferry.core import FeatureRepo, encode_key
from ferry.core.timestamps import format_micros
from ferry.server import FerryServer, Limits
from ferry.stores import DynamoOnlineStore, ViewTable, storage_key
from tests.e2e.fraud import SAMPLE_REPO
from tests.server.conftest import END, start_server
from tests.server.test_consistency import check_training_equals_serving
from tests.server.test_metrics import scrape, value
from tests.server.test_push import USER_FEATURES, user_row
from tests.services import MotoServer, upload_to_s3


@pytest.fixture(scope="module")
def s3_served_data(served_data: Path, moto_server: MotoServer) -> str:
    return upload_to_s3(served_data, moto_server, f"served-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def loaded_dynamodb(s3_served_data: str, moto_server: MotoServer) -> str:
    """The served data materialized from S3 into a new DynamoDB table, through the CLI."""
    url = moto_server.dynamodb_url(f"served-{uuid.uuid4().hex[:8]}")
    ferry = [sys.executable, "-m", "ferry.cli.main"]
    common = [str(SAMPLE_REPO), "--online-store", url]
    subprocess.run([*ferry, "init-store", *common], check=True, capture_output=True, timeout=60)
    window = ["--start", "2000-01-01", "--end", format_micros(END)]
    subprocess.run(
        [*ferry, "materialize", *common, "--offline-root", s3_served_data, *window],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return url


@pytest.fixture
async def dynamodb_server(loaded_dynamodb: str) -> AsyncIterator[FerryServer]:
    # moto answers a BatchGetItem in ~10 ms idle, past 1 s on a busy machine: the 1 s store
    # timeout meant for DynamoDB failed the equality checks here.
    running = await start_server(loaded_dynamodb, limits=Limits(store_timeout_s=10.0))
    yield running
    await running.stop(0)


async def test_training_frame_from_s3_equals_what_dynamodb_serves(
    dynamodb_server: FerryServer, served_repo: FeatureRepo, served_data: Path, s3_served_data: str
) -> None:
    on_s3 = FeatureRepo(**{**served_repo.__dict__, "offline_root": s3_served_data})
    served = await check_training_equals_serving(dynamodb_server.port, on_s3, served_data)
    assert {s for f in served for s in f.statuses} >= {"PRESENT", "NOT_FOUND"}


async def test_verify_finds_no_skew_on_dynamodb(
    dynamodb_server: FerryServer, loaded_dynamodb: str, s3_served_data: str
) -> None:
    # In a thread: the server answers on this test's event loop.
    done = await asyncio.to_thread(
        subprocess.run,
        [
            *(sys.executable, "-m", "ferry.cli.main", "verify", str(SAMPLE_REPO)),
            *("--target", f"127.0.0.1:{dynamodb_server.port}", "--offline-root", s3_served_data),
            *("--online-store", loaded_dynamodb, "--sample", "200"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


async def test_concurrent_lookups_share_batch_get_item_calls(
    dynamodb_server: FerryServer,
) -> None:
    """DynamoDB's default natural batching (2 reads in flight): 24 lookups at once need far
    fewer BatchGetItem calls than lookups."""
    assert dynamodb_server.features is not None
    store = dynamodb_server.features.store
    assert isinstance(store, DynamoOnlineStore)
    store.calls.clear()
    async with AsyncFerryClient(f"127.0.0.1:{dynamodb_server.port}", timeout_s=30) as client:
        results = await asyncio.gather(
            *(
                client.get_online_features(
                    entities={"user_id": [i], "merchant_id": [f"m{i:07d}"]},
                    feature_service="fraud_v1",
                )
                for i in range(1, 25)
            )
        )
    assert all(result.row_count == 1 for result in results)
    assert store.calls["batch_get_item"] < 24 / 2


async def test_a_push_never_blanks_on_dynamodb(dynamodb_server: FerryServer) -> None:
    """The push rule holds on DynamoDB too: leaving features out is refused and writes
    nothing; nulls pushed on purpose are stored. (A key the data set lacks: the table is
    shared by this module's other tests.)"""
    user = 990_001
    now = datetime.now(UTC)
    refs = [f"user_stats:{name}" for name in USER_FEATURES]
    async with AsyncFerryClient(f"127.0.0.1:{dynamodb_server.port}", timeout_s=30) as client:
        with pytest.raises(InvalidArgumentError) as caught:
            await client.push("user_stats", [{"user_id": user, "event_timestamp": now}])
        assert caught.value.reason == "MISSING_FEATURES"
        refused = await client.get_online_features(entities={"user_id": [user]}, features=refs)
        assert refused["user_stats:txn_count_7d"].statuses == ["NOT_FOUND"]
        await client.push("user_stats", [user_row(user, now, 7, last_country="NO")])
        stored = await client.get_online_features(entities={"user_id": [user]}, features=refs)
    assert stored.to_dict() == {
        "user_id": [user],
        **{name: [None] for name in refs},
        "user_stats:txn_count_7d": [7],
        "user_stats:last_country": ["NO"],
    }


async def test_a_push_past_the_item_limit_is_invalid_argument(
    dynamodb_server: FerryServer,
) -> None:
    user = 990_777  # not in the data set (990_002 is one of its edge users)
    huge = user_row(user, datetime.now(UTC), 1, last_country="x" * 420_000)
    async with AsyncFerryClient(f"127.0.0.1:{dynamodb_server.port}", timeout_s=30) as client:
        with pytest.raises(InvalidArgumentError) as caught:
            await client.push("user_stats", [huge])
        assert caught.value.reason == "ROW_TOO_LARGE"
        assert "view 'user_stats': the row of entity 990777 needs a" in str(caught.value)
        stored = await client.get_online_features(
            entities={"user_id": [user]}, features=["user_stats:txn_count_7d"]
        )
    assert stored["user_stats:txn_count_7d"].statuses == ["NOT_FOUND"]


async def test_an_item_written_by_something_else_is_data_loss_for_its_key(
    dynamodb_server: FerryServer, loaded_dynamodb: str, moto_server: MotoServer
) -> None:
    """Items whose row attribute is missing or not binary (another writer's, in the same
    table) were a KeyError, INTERNAL; now DATA_LOSS naming the entity, as for a row that
    does not decode, and the other keys are served as ever."""
    table = loaded_dynamodb.split("://")[1].split("?")[0]
    key = storage_key(ViewTable("fraud", "user_stats", 0), encode_key([990_101]))
    other = storage_key(ViewTable("fraud", "user_stats", 0), encode_key([990_102]))
    async with get_session().create_client(
        "dynamodb", region_name="us-east-1", endpoint_url=moto_server.endpoint
    ) as client:
        await client.put_item(TableName=table, Item={"k": {"B": key}, "v": {"S": "text"}})
        await client.put_item(TableName=table, Item={"k": {"B": other}, "exp": {"N": "1e30"}})
    async with AsyncFerryClient(f"127.0.0.1:{dynamodb_server.port}", timeout_s=30) as client:
        for user in (990_101, 990_102):
            with pytest.raises(RpcError) as caught:
                await client.get_online_features(
                    entities={"user_id": [1, user]}, features=["user_stats:txn_count_7d"]
                )
            assert caught.value.code is grpc.StatusCode.DATA_LOSS
            assert caught.value.metadata == {"feature_view": "user_stats", "entity": str(user)}
        fine = await client.get_online_features(
            entities={"user_id": [1, 2]}, features=["user_stats:txn_count_7d"]
        )
    assert fine.row_count == 2


async def test_dynamodb_requests_are_exported_by_request(loaded_dynamodb: str) -> None:
    """``ferry_store_requests_total``: what DynamoDB bills, as the store sent it. 150
    entities of two views are 300 keys: 3 BatchGetItems of at most 100."""
    server = await start_server(
        loaded_dynamodb, metrics_port=0, limits=Limits(store_timeout_s=10.0)
    )
    try:
        before = await asyncio.to_thread(scrape, server.metrics_port)
        users = list(range(1, 151))
        entities = {"user_id": users, "merchant_id": [f"m{i:07d}" for i in users]}
        async with AsyncFerryClient(f"127.0.0.1:{server.port}", timeout_s=30) as client:
            await client.get_online_features(entities=entities, feature_service="fraud_v1")
        after = await asyncio.to_thread(scrape, server.metrics_port)
    finally:
        await server.stop(0)
    wanted = {"backend": "dynamodb", "request": "batch_get_item"}
    name = "ferry_store_requests_total"
    assert value(after, name, **wanted) - value(before, name, **wanted) == 3
    assert value(after, name, backend="dynamodb", request="get_item") >= 1  # health pings

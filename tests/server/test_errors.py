"""Every bad input gets its exact status code, an ErrorInfo reason and a message naming the
culprit; no traceback reaches a client."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from ferry.api.serving.v1 import serving_pb2, serving_pb2_grpc
from ferry.api.types.v1 import types_pb2
from ferry.client import AsyncFerryClient, InvalidArgumentError, NotFoundError, RpcError
from ferry.client._errors import from_rpc_error
from ferry.core import encode_key
from ferry.server import FerryServer, Limits, interceptor
from ferry.stores import ViewTable, open_online_store
from tests.server.conftest import start_server

USERS = {"user_id": [1, 2]}


@pytest.mark.parametrize(
    ("kwargs", "error", "reason", "message", "metadata"),
    [
        (
            {"feature_service": "nope", "entities": USERS},
            NotFoundError,
            "UNKNOWN_FEATURE_SERVICE",
            "unknown feature service 'nope'",
            {"feature_service": "nope"},
        ),
        (
            {"features": ["nope:x"], "entities": USERS},
            InvalidArgumentError,
            "UNKNOWN_FEATURE",
            "feature reference 'nope:x': unknown feature view 'nope'",
            {"feature_view": "nope"},
        ),
        (
            {"features": ["user_stats:nope"], "entities": USERS},
            InvalidArgumentError,
            "UNKNOWN_FEATURE",
            "feature view 'user_stats' has no feature 'nope'",
            {"feature": "nope"},
        ),
        (
            {"features": ["user_stats"], "entities": USERS},
            InvalidArgumentError,
            "MALFORMED_FEATURE_REFERENCE",
            "is not of the form view:feature",
            {"feature_ref": "user_stats"},
        ),
        (
            {"features": ["user_stats:txn_count_7d", "user_stats:*"], "entities": USERS},
            InvalidArgumentError,
            "DUPLICATE_FEATURE",
            "requested twice: user_stats:txn_count_7d",
            {},
        ),
        (
            {"features": ["user_stats:*"], "entities": {"user_id": [1, 2], "merchant_id": ["m"]}},
            InvalidArgumentError,
            "UNEXPECTED_JOIN_KEY",
            "entity column 'merchant_id' is not a join key of the requested features",
            {"join_key": "merchant_id"},
        ),
        (
            {"feature_service": "fraud_v1", "entities": {"user_id": [1, 2], "merchant_id": ["m"]}},
            InvalidArgumentError,
            "RAGGED_ENTITY_COLUMNS",
            "entity columns have unequal lengths: user_id=2, merchant_id=1",
            {},
        ),
        (
            {"feature_service": "fraud_v1", "entities": USERS},
            InvalidArgumentError,
            "MISSING_JOIN_KEY",
            "missing join key 'merchant_id', needed by feature view 'merchant_stats'",
            {"join_key": "merchant_id"},
        ),
        (
            {"features": ["user_stats:*"], "entities": {"user_id": ["1"]}},
            InvalidArgumentError,
            "WRONG_JOIN_KEY_TYPE",
            "join key 'user_id' is int64, but its column holds string",
            {"join_key": "user_id", "expected": "int64", "got": "string"},
        ),
        (
            {"features": ["user_stats:*"], "entities": {"user_id": []}},
            InvalidArgumentError,
            "NO_ENTITIES",
            "the request has no entity rows",
            {},
        ),
        (
            {"features": ["user_stats:*"], "entities": {"user_id": list(range(5001))}},
            InvalidArgumentError,
            "TOO_MANY_ENTITY_ROWS",
            "5001 entity rows is more than the limit of 5000",
            {"rows": "5001", "limit": "5000"},
        ),
    ],
)
async def test_bad_requests(
    server: FerryServer,
    kwargs: dict[str, Any],
    error: type[RpcError],
    reason: str,
    message: str,
    metadata: dict[str, str],
) -> None:
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(error) as caught:
            await client.get_online_features(**kwargs)
    assert caught.value.reason == reason
    assert message in str(caught.value)
    assert metadata.items() <= caught.value.metadata.items()
    assert "Traceback" not in str(caught.value)


async def raw_call(server: FerryServer, method: str, request: Any) -> RpcError:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = serving_pb2_grpc.ServingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(stub, method)(request, timeout=5)
    return from_rpc_error(caught.value)


async def test_requests_without_features_or_entities(server: FerryServer) -> None:
    error = await raw_call(server, "GetOnlineFeatures", serving_pb2.GetOnlineFeaturesRequest())
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NO_FEATURES")
    request = serving_pb2.GetOnlineFeaturesRequest(feature_service="fraud_v1")
    error = await raw_call(server, "GetOnlineFeatures", request)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NO_ENTITIES")
    request.entities["user_id"].CopyFrom(types_pb2.Column())
    request.entities["merchant_id"].string_values.values.append("m")
    error = await raw_call(server, "GetOnlineFeatures", request)
    assert error.reason == "WRONG_JOIN_KEY_TYPE"
    assert "holds no values" in str(error)


async def test_get_model_features_is_not_served_yet(server: FerryServer) -> None:
    error = await raw_call(server, "GetModelFeatures", serving_pb2.GetModelFeaturesRequest())
    assert error.code is grpc.StatusCode.UNIMPLEMENTED


async def test_a_message_over_the_size_limit(loaded_store: str) -> None:
    server = await start_server(
        loaded_store, max_message_bytes=64 * 1024, limits=Limits(max_entity_rows=1_000_000)
    )
    try:
        async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
            with pytest.raises(RpcError) as caught:
                await client.get_online_features(
                    entities={"merchant_id": ["m" * 100] * 1000}, features=["merchant_stats:*"]
                )
        assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await server.stop(0)


@pytest.mark.parametrize(("values", "lengths"), [([1.0, 2.0, 3.0], [1]), ([1.0], [5]), ([], [1])])
async def test_a_pushed_list_whose_lengths_and_values_disagree(
    server: FerryServer, values: list[float], lengths: list[int]
) -> None:
    request = serving_pb2.PushFeaturesRequest(view="user_stats")
    request.columns["user_id"].int64_values.values.append(987_654)
    request.columns["event_timestamp"].timestamp_values.micros.append(1_700_000_000_000_000)
    embedding = request.columns["risk_embedding"].float_list_values
    embedding.values.extend(values)
    embedding.lengths.extend(lengths)
    error = await raw_call(server, "PushFeatures", request)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "RAGGED_LIST_COLUMN")
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        stored = await client.get_online_features(
            entities={"user_id": [987_654]}, features=["user_stats:risk_embedding"]
        )
    assert stored["user_stats:risk_embedding"].statuses == ["NOT_FOUND"]  # nothing written


@pytest.mark.parametrize(
    "method",
    ["GetOnlineFeatures", "PushFeatures", "GetModelFeatures", "StreamOnlineFeatures"],
)
async def test_garbage_bytes_are_invalid_argument_without_a_traceback(
    server: FerryServer, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/ferry.api.serving.v1.ServingService/{method}"
    garbage = b"\xff\xff\xff\xff"

    async def send(channel: grpc.aio.Channel) -> None:
        if method != "StreamOnlineFeatures":
            await channel.unary_unary(path)(garbage, timeout=5)
            return
        async for _ in channel.stream_stream(path)(iter([garbage]), timeout=5):
            pass

    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await send(channel)
    error = from_rpc_error(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNDECODABLE_REQUEST")
    assert "Request" in str(error)  # names the message it expected
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]


async def test_undecodable_requests_are_logged_once_a_minute(
    server: FerryServer, caplog: pytest.LogCaptureFixture
) -> None:
    interceptor._last_undecodable_log.clear()
    path = "/ferry.api.serving.v1.ServingService/GetOnlineFeatures"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary(path)(b"\xff\xff\xff\xff", timeout=5)
    warnings = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(warnings) == 1
    assert "GetOnlineFeaturesRequest" in warnings[0].getMessage()


async def test_a_stored_row_that_does_not_decode_is_data_loss_not_garbage(
    loaded_store: str, server: FerryServer
) -> None:
    store = open_online_store(loaded_store)
    try:
        await store.write(
            ViewTable("fraud", "user_stats", 2 * 86_400_000_000),
            [(encode_key([424_242]), b"\x01" + b"\xff" * 40)],  # a version byte, then junk
        )
    finally:
        await store.close()
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(RpcError) as caught:
            await client.get_online_features(
                entities={"user_id": [1, 424_242]}, features=["user_stats:txn_count_7d"]
            )
        fine = await client.get_online_features(
            entities={"user_id": [1, 2]}, features=["user_stats:txn_count_7d"]
        )
    assert caught.value.code is grpc.StatusCode.DATA_LOSS
    assert caught.value.reason == "CORRUPT_STORED_ROW"
    assert caught.value.metadata == {"feature_view": "user_stats", "entity": "424242"}
    assert fine.row_count == 2  # other entities are served as ever

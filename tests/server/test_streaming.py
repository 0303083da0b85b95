"""StreamOnlineFeatures: one answer per lookup, in order, errors answered in place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio

from ferry.api.serving.v1 import serving_pb2, serving_pb2_grpc
from ferry.client import (
    AsyncFerryClient,
    InvalidArgumentError,
    Lookup,
    NotFoundError,
    OnlineFeatures,
)
from ferry.server import FerryServer

ENTITIES: dict[str, list[Any]] = {"user_id": [1, 2, 999_999], "merchant_id": ["m0000001"] * 3}


async def test_answers_come_in_order_with_errors_in_place(server: FerryServer) -> None:
    lookups = [
        Lookup(ENTITIES, feature_service="fraud_v1"),
        Lookup(ENTITIES, feature_service="no_such_service"),
        Lookup({"user_id": ["not-an-int"]}, features=["user_stats:txn_count_7d"]),
        Lookup({"user_id": [2, 1]}, features=["user_stats:*"]),
    ]
    async with AsyncFerryClient(f"127.0.0.1:{server.port}", timeout_s=10) as client:
        results = [r async for r in client.stream_online_features(lookups, timeout_s=10)]
        unary = [
            await client.get_online_features(entities=ENTITIES, feature_service="fraud_v1"),
            await client.get_online_features(
                entities={"user_id": [2, 1]}, features=["user_stats:*"]
            ),
        ]
    assert len(results) == 4
    first, missing, wrong, last = results
    assert isinstance(first, OnlineFeatures)
    assert isinstance(last, OnlineFeatures)
    assert first.to_dict() == unary[0].to_dict()
    assert last.to_dict() == unary[1].to_dict()
    assert last.to_dict()["user_id"] == [2, 1]  # each answer keyed by its own lookup
    assert isinstance(missing, NotFoundError)
    assert "no_such_service" in str(missing)
    assert isinstance(wrong, InvalidArgumentError)
    assert wrong.reason == "WRONG_JOIN_KEY_TYPE"
    assert wrong.metadata["join_key"] == "user_id"


async def test_lookups_may_arrive_over_time(server: FerryServer) -> None:
    async def arriving() -> AsyncIterator[Lookup]:
        for user in range(1, 6):
            await asyncio.sleep(0.01)
            yield Lookup({"user_id": [user]}, features=["user_stats:txn_count_7d"])

    async with AsyncFerryClient(f"127.0.0.1:{server.port}", timeout_s=10) as client:
        results = [r async for r in client.stream_online_features(arriving())]
        singles = [
            await client.get_online_features(
                entities={"user_id": [user]}, features=["user_stats:txn_count_7d"]
            )
            for user in range(1, 6)
        ]
    assert [r.to_dict() for r in results] == [s.to_dict() for s in singles]  # type: ignore[union-attr]


async def test_a_message_without_a_request_is_answered_with_an_error(
    server: FerryServer,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = serving_pb2_grpc.ServingServiceStub(channel)
        call = stub.StreamOnlineFeatures(iter([serving_pb2.StreamOnlineFeaturesRequest()]))
        answers = [answer async for answer in call]
    assert len(answers) == 1
    assert answers[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert answers[0].error.reason == "MISSING_REQUEST"

"""The store slow, paused, killed and back: deadlines, UNAVAILABLE, health, recovery."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferry.client import AsyncFerryClient, DeadlineExceededError, RetryPolicy, UnavailableError
from ferry.core import FeatureRepo
from ferry.server import Limits
from tests.server.conftest import load_store, start_server
from tests.services import RedisServer, free_port, start_redis

ENTITIES = {"user_id": [1, 2, 3]}


async def health_status(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=2
        )
        return int(reply.status)


async def wait_for_health(port: int, status: int, within_s: float) -> float:
    started = time.monotonic()
    while await health_status(port) != status:
        assert time.monotonic() - started < within_s, f"health did not become {status}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_deadline_shorter_than_a_paused_redis(
    redis_server: RedisServer, redis_url: str, served_repo: FeatureRepo
) -> None:
    await load_store(served_repo, redis_url)
    server = await start_server(redis_url, limits=Limits(store_timeout_s=5.0))
    try:
        async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
            await client.get_online_features(entities=ENTITIES, features=["user_stats:*"])
            redis_server.cli("client", "pause", "2000", "ALL")
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError):
                await client.get_online_features(
                    entities=ENTITIES, features=["user_stats:*"], timeout_s=0.3
                )
            assert time.monotonic() - started < 1.0
            redis_server.cli("client", "unpause")
            result = await client.get_online_features(
                entities=ENTITIES, features=["user_stats:*"], timeout_s=5
            )
            assert result.row_count == 3
    finally:
        redis_server.cli("client", "unpause")
        await server.stop(0)


async def test_the_store_timeout_bounds_a_call_without_deadline(
    redis_server: RedisServer, redis_url: str, served_repo: FeatureRepo
) -> None:
    await load_store(served_repo, redis_url)
    server = await start_server(redis_url, limits=Limits(store_timeout_s=0.2))
    try:
        async with AsyncFerryClient(
            f"127.0.0.1:{server.port}", timeout_s=10, retry=RetryPolicy(attempts=1)
        ) as client:
            redis_server.cli("client", "pause", "1500", "ALL")
            started = time.monotonic()
            with pytest.raises(UnavailableError, match=r"did not answer within 0\.2 s"):
                await client.get_online_features(entities=ENTITIES, features=["user_stats:*"])
            assert time.monotonic() - started < 1.0
    finally:
        redis_server.cli("client", "unpause")
        await server.stop(0)


async def test_redis_killed_then_back(tmp_path: Path, served_repo: FeatureRepo) -> None:
    redis = start_redis(tmp_path)
    server = None
    try:
        await load_store(served_repo, redis.url)
        server = await start_server(redis.url, health_interval_s=0.1)
        await wait_for_health(server.port, health_pb2.HealthCheckResponse.SERVING, 2)
        async with AsyncFerryClient(
            f"127.0.0.1:{server.port}", retry=RetryPolicy(attempts=1)
        ) as client:
            redis.kill()
            started = time.monotonic()
            with pytest.raises(UnavailableError, match="is unreachable"):
                await client.get_online_features(entities=ENTITIES, features=["user_stats:*"])
            assert time.monotonic() - started < 1.0
            await wait_for_health(server.port, health_pb2.HealthCheckResponse.NOT_SERVING, 2)

            redis = start_redis(tmp_path, port=redis.port)
            await wait_for_health(server.port, health_pb2.HealthCheckResponse.SERVING, 5)
            await load_store(served_repo, redis.url)
            result = await client.get_online_features(entities=ENTITIES, features=["user_stats:*"])
            assert result["user_stats:is_premium"].statuses[0] != "NOT_FOUND"
    finally:
        if server is not None:
            await server.stop(0)
        redis.stop()


async def test_client_retries_unavailable_until_the_server_is_up(
    loaded_store: str,
) -> None:
    port = free_port()
    retry = RetryPolicy(attempts=8, initial_backoff_s=0.05, multiplier=1.5)
    async with AsyncFerryClient(f"127.0.0.1:{port}", timeout_s=10, retry=retry) as client:
        call = asyncio.create_task(
            client.get_online_features(entities=ENTITIES, features=["user_stats:*"])
        )
        await asyncio.sleep(0.15)
        assert not call.done()
        server = await start_server(loaded_store, **{"port": port})
        try:
            assert (await call).row_count == 3
        finally:
            await server.stop(0)


async def test_without_retries_an_absent_server_is_unavailable_at_once() -> None:
    async with AsyncFerryClient(
        f"127.0.0.1:{free_port()}", retry=RetryPolicy(attempts=1)
    ) as client:
        with pytest.raises(UnavailableError) as caught:
            await client.get_online_features(entities=ENTITIES, features=["user_stats:*"])
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE


async def test_a_wrong_redis_password_is_unavailable_with_its_own_reason(
    tmp_path: Path, served_repo: FeatureRepo
) -> None:
    redis = start_redis(tmp_path)
    server = None
    try:
        await load_store(served_repo, redis.url)
        redis.cli("config", "set", "requirepass", "right-secret")
        wrong = f"redis://:wrong-secret@127.0.0.1:{redis.port}/0"
        server = await start_server(wrong, health_interval_s=0.1)
        await wait_for_health(server.port, health_pb2.HealthCheckResponse.NOT_SERVING, 2)
        async with AsyncFerryClient(
            f"127.0.0.1:{server.port}", retry=RetryPolicy(attempts=1)
        ) as client:
            with pytest.raises(UnavailableError) as caught:
                await client.get_online_features(entities=ENTITIES, features=["user_stats:*"])
        assert caught.value.reason == "STORE_AUTHENTICATION_FAILED"
        assert "WRONGPASS" in str(caught.value)
        assert "wrong-secret" not in str(caught.value)
    finally:
        if server is not None:
            await server.stop(0)
        redis.stop()


async def test_a_store_that_accepts_and_closes_connections(
    tmp_path: Path, served_repo: FeatureRepo
) -> None:
    """Redis at maxclients accepts a connection, says so and closes it (as a proxy whose
    backend is down does): every call is UNAVAILABLE meanwhile, never INTERNAL; health is
    NOT_SERVING, then SERVING again within a probe interval of the end; the drain is clean."""
    redis = start_redis(tmp_path)
    server = None
    holder = None
    try:
        await load_store(served_repo, redis.url)
        server = await start_server(redis.url, health_interval_s=0.1)
        async with AsyncFerryClient(
            f"127.0.0.1:{server.port}", retry=RetryPolicy(attempts=1), timeout_s=2
        ) as client:
            await client.get_online_features(entities=ENTITIES, features=["user_stats:*"])
            reader, holder = await asyncio.open_connection("127.0.0.1", redis.port)
            # One write: drop every other client and let none back in but this one.
            holder.write(b"CLIENT KILL TYPE normal SKIPME yes\r\nCONFIG SET maxclients 1\r\n")
            await holder.drain()
            await reader.readline()
            await reader.readline()
            codes = set()
            for _ in range(40):
                try:
                    await client.get_online_features(entities=ENTITIES, features=["user_stats:*"])
                    codes.add("OK")
                except UnavailableError as err:
                    codes.add(err.code.name)
                await asyncio.sleep(0.01)
            assert codes == {"UNAVAILABLE"}
            await wait_for_health(server.port, health_pb2.HealthCheckResponse.NOT_SERVING, 2)

            holder.write(b"CONFIG SET maxclients 10000\r\n")
            await holder.drain()
            await reader.readline()
            took = await wait_for_health(server.port, health_pb2.HealthCheckResponse.SERVING, 2)
            assert took < 0.5  # a probe interval (0.1 s) and its timeout, with slack
            result = await client.get_online_features(entities=ENTITIES, features=["user_stats:*"])
            assert result.row_count == 3
        await server.stop(1)
        server = None
    finally:
        if holder is not None:
            holder.close()
        if server is not None:
            await server.stop(0)
        redis.stop()

"""The pipelined RESP connection against a real redis-server of its own (these tests pause,
password-protect and kill it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.core import Feature, RowCodec, ValueType
from ferry.core.errors import StoreError, StoreUnavailableError
from ferry.stores.base import ReadRequest, ViewTable, WriteResult
from ferry.stores.redis import RedisConfig, RedisOnlineStore
from ferry.stores.resp import RespConnection
from tests.services import RedisServer, start_redis

pytestmark = pytest.mark.redis


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    redis = start_redis(tmp_path)
    yield redis
    redis.stop()


async def test_replies_match_commands_under_concurrency(server: RedisServer) -> None:
    server.cli("mset", "a", "1", "b", "2", "c", "3")
    connection = RespConnection(server.url, 5, 2)
    keys = [("a", b"1"), ("b", b"2"), ("c", b"3"), ("zz", None)] * 50
    replies = await asyncio.gather(*(connection.execute(b"GET", key) for key, _ in keys))
    assert replies == [value for _, value in keys]
    assert await connection.execute(b"MGET", b"a", b"zz", b"c") == [b"1", None, b"3"]
    await connection.close()


async def test_a_caller_that_gives_up_keeps_the_order(server: RedisServer) -> None:
    server.cli("mset", "a", "1", "b", "2")
    connection = RespConnection(server.url, 5, 2)
    await connection.execute(b"PING")
    server.cli("client", "pause", "300", "all")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(connection.execute(b"GET", b"a"), 0.05)
    # The abandoned GET's reply arrives first and is dropped; this one gets its own.
    assert await connection.execute(b"GET", b"b") == b"2"
    await connection.close()


async def test_an_error_reply_is_a_store_error(server: RedisServer) -> None:
    connection = RespConnection(server.url, 5, 2)
    with pytest.raises(StoreError, match="unknown command"):
        await connection.execute(b"NOSUCHCOMMAND")
    assert await connection.execute(b"PING") == b"PONG"
    await connection.close()


async def test_a_frozen_server_fails_everything_outstanding(server: RedisServer) -> None:
    connection = RespConnection(server.url, 0.2, 2)
    await connection.execute(b"PING")
    server.cli("client", "pause", "2000", "all")
    stuck = [asyncio.ensure_future(connection.execute(b"PING")) for _ in range(3)]
    await asyncio.sleep(0.1)
    late = asyncio.ensure_future(connection.execute(b"PING"))
    for command in [*stuck, late]:  # the late one too: the connection is dropped
        with pytest.raises(StoreUnavailableError, match=r"no reply within 0\.2 s"):
            await command
    server.cli("client", "unpause")
    assert await connection.execute(b"PING") == b"PONG"  # reconnected
    await connection.close()


async def test_a_killed_server_fails_outstanding_and_later_commands(
    server: RedisServer, tmp_path: Path
) -> None:
    connection = RespConnection(server.url, 5, 0.5)
    await connection.execute(b"PING")
    server.kill()
    with pytest.raises(StoreUnavailableError):
        await connection.execute(b"PING")
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        await connection.execute(b"PING")
    restarted = start_redis(tmp_path, port=server.port)
    try:
        assert await connection.execute(b"PING") == b"PONG"
    finally:
        await connection.close()
        restarted.stop()


async def test_password_and_database_from_the_url(server: RedisServer) -> None:
    server.cli("config", "set", "requirepass", "s3cret")
    base = f"redis://:s3cret@127.0.0.1:{server.port}"
    writer = RespConnection(f"{base}/3", 5, 2)
    await writer.execute(b"SET", b"k", b"in-db-3")
    default_db = RespConnection(f"{base}/0", 5, 2)
    assert await default_db.execute(b"GET", b"k") is None
    assert await writer.execute(b"GET", b"k") == b"in-db-3"
    wrong = RespConnection(f"redis://:nope@127.0.0.1:{server.port}/0", 5, 2)
    with pytest.raises(StoreError, match=r"WRONGPASS|invalid password"):
        await wrong.execute(b"PING")
    for connection in (writer, default_db, wrong):
        await connection.close()


async def test_store_writes_survive_a_flushed_script_cache(server: RedisServer) -> None:
    codec = RowCodec([Feature("n", ValueType.INT64)])
    table = ViewTable("p", "v")
    store = RedisOnlineStore(RedisConfig(server.url))
    assert await store.write(table, [(b"k", codec.encode(1, None, [1]))]) == WriteResult(1, 0)
    server.cli("script", "flush")  # as after a restart, or an operator's SCRIPT FLUSH
    assert await store.write(table, [(b"k", codec.encode(2, None, [2]))]) == WriteResult(1, 0)
    ((row,),) = await store.read([ReadRequest(table, [b"k"])])
    assert row is not None
    assert codec.decode(row).values == (2,)
    await store.close()


async def test_a_lone_command_to_a_frozen_server_fails_at_the_timeout(
    server: RedisServer,
) -> None:
    connection = RespConnection(server.url, 0.2, 2)
    await connection.execute(b"PING")
    server.cli("client", "pause", "3000", "all")
    started = asyncio.get_running_loop().time()
    with pytest.raises(StoreUnavailableError, match=r"no reply within 0\.2 s"):
        await connection.execute(b"PING")  # nothing else is sent: the timer must fire
    assert asyncio.get_running_loop().time() - started < 1.5
    server.cli("client", "unpause")
    assert await connection.execute(b"PING") == b"PONG"
    await connection.close()

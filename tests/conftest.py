from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.services import RedisServer, start_redis

# No per-example deadline: on a shared 2-core machine a first example can take most of a
# second (imports, a busy neighbour); the per-test timeout still bounds every test.
settings.register_profile("ferry", deadline=None)
settings.load_profile("ferry")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database of the session's redis-server."""
    redis_server.cli("flushall")
    return redis_server.url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'online.db'}"

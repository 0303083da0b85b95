from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import settings

from ferry.stores import DynamoConfig, DynamoOnlineStore
from tests.certs import Authority
from tests.services import (
    AWS_TEST_ENVIRONMENT,
    ClusterTls,
    MotoServer,
    RedisCluster,
    RedisServer,
    start_cluster,
    start_moto,
    start_redis,
)

# No per-example deadline: on a shared 2-core machine a first example can take most of a
# second (imports, a busy neighbour); the per-test timeout still bounds every test.
settings.register_profile("ferry", deadline=None)
settings.load_profile("ferry")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, str]]:
    """A redis-server that also speaks TLS (a test CA's certificate), with an ACL user
    ``ferry``, as managed Redis services are set up; and that CA's file."""
    folder = tmp_path_factory.mktemp("tls-redis")
    authority = Authority(folder / "ca")
    pem = authority.issue("redis")
    server = start_redis(folder, tls=(pem.cert, pem.key, authority.ca_file))
    server.cli("ACL", "SETUSER", "ferry", "on", ">s3cret-pass", "~*", "+@all")
    yield server, authority.ca_file
    server.stop()


@pytest.fixture
def rediss_url(tls_redis: tuple[RedisServer, str]) -> str:
    """A clean database of the TLS redis-server, as its ACL user, over TLS."""
    server, ca = tls_redis
    server.cli("flushall")
    return f"rediss://ferry:s3cret-pass@127.0.0.1:{server.tls_port}/0?ca={ca}"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A Redis Cluster of 3 primaries and 3 replicas on loopback, for the whole session;
    tests that kill or reshard nodes start a cluster of their own."""
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """The session's Redis Cluster, emptied."""
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture(scope="session")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A Redis Cluster of 3 primaries that speaks TLS only (a test CA's certificate), with
    an ACL user ``ferry`` on every node, as a managed Redis Cluster is set up."""
    folder = tmp_path_factory.mktemp("tls-cluster")
    authority = Authority(folder / "ca")
    server, bus = authority.issue("redis"), authority.issue("redis-bus", client=True)
    tls = ClusterTls(server.cert, server.key, bus.cert, bus.key, authority.ca_file)
    cluster = start_cluster(folder, replicas=0, tls=tls)
    for node in cluster.nodes:
        cluster.cli(node.port, "ACL", "SETUSER", "ferry", "on", ">s3cret-pass", "~*", "+@all")
    cluster.userinfo = "ferry:s3cret-pass@"
    cluster.query = f"ca={authority.ca_file}"
    yield cluster
    cluster.stop()


@pytest.fixture
def rediss_cluster_url(tls_cluster: RedisCluster) -> str:
    """The TLS cluster, emptied, as its ACL user."""
    tls_cluster.flush()
    return tls_cluster.url


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database of the session's redis-server."""
    redis_server.cli("flushall")
    return redis_server.url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'online.db'}"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    os.environ.update(AWS_TEST_ENVIRONMENT)  # for this process and the CLIs it runs
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def dynamodb_url(moto_server: MotoServer) -> str:
    """A new, initialized table of the session's moto server (one per test: no reset)."""
    url = moto_server.dynamodb_url(f"ferry-{uuid.uuid4().hex[:12]}")

    async def create() -> None:
        store = DynamoOnlineStore(DynamoConfig.from_url(url))
        try:
            await store.initialize()
        finally:
            await store.close()

    # In a thread of its own: async tests ask for this fixture from a running loop.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, create()).result()
    return url

"""The Redis Cluster store against real clusters on loopback: what only a cluster has (slots,
redirections, a migrating slot, a primary killed, a reshard under load) and its bad inputs.
The shared contract suite runs on the session's cluster (tests/stores/test_contract.py)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ferry.core import Feature, RowCodec, ValueType, encode_key
from ferry.core.errors import StoreError, StoreUnavailableError
from ferry.stores import (
    CachedOnlineStore,
    CacheLimits,
    NearCache,
    ReadRequest,
    ViewTable,
    open_online_store,
    storage_key,
)
from ferry.stores.cluster import key_slot
from ferry.stores.redis_cluster import RedisClusterOnlineStore
from ferry.stores.resp import RespConnection, StoreAuthenticationError
from tests.certs import TLS_FAULTS, tls_fault
from tests.services import (
    RedisCluster,
    RedisServer,
    free_port,
    start_cluster,
    start_cluster_node,
    wait_for_ping,
)

VIEW = ViewTable("proj", "view")
CODEC = RowCodec([Feature("n", ValueType.INT64)])


def row(version: int, value: int) -> bytes:
    return CODEC.encode(version, 0, [value])


def value_of(stored: bytes | None) -> tuple[int, int] | None:
    """(version, value) of a stored row."""
    if stored is None:
        return None
    decoded = CODEC.decode(stored)
    return decoded.event_timestamp, decoded.values[0]


@pytest.fixture(scope="module")
def fragile_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3+3 cluster of this module alone: its tests move slots and kill a primary."""
    cluster = start_cluster(tmp_path_factory.mktemp("fragile-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
async def fragile_store(fragile_cluster: RedisCluster) -> AsyncIterator[RedisClusterOnlineStore]:
    fragile_cluster.flush()
    store = open_online_store(fragile_cluster.url)
    assert isinstance(store, RedisClusterOnlineStore)
    yield store
    await store.close()


async def test_slots_are_the_clusters_own(redis_cluster: RedisCluster) -> None:
    node = RespConnection(f"redis://127.0.0.1:{redis_cluster.nodes[0].port}/0", 5, 2)
    keys = [b"a", b"proj:view:\x00\x01", b"{user1}:x", b"x{user1}y", b"{}a", b"a{}b{c}", b"{a"]
    keys += [random.randbytes(random.randrange(1, 40)) for _ in range(200)]
    for key in keys:
        assert key_slot(key) == await node.execute(b"CLUSTER", b"KEYSLOT", key), key
    await node.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "expected redis+cluster://HOST:PORT[,HOST:PORT...]"),
        ("redis+cluster://127.0.0.1", "node '127.0.0.1': expected HOST:PORT"),
        ("redis+cluster://127.0.0.1:7000,nope", "node 'nope': expected HOST:PORT"),
        ("redis+cluster://127.0.0.1:99999", "node '127.0.0.1:99999'"),
        ("redis+cluster://127.0.0.1:7000/2", "database 0 only"),
        ("redis+cluster://127.0.0.1:7000?ca=/x.pem", "TLS parameters need a rediss:// URL"),
        ("rediss+cluster://127.0.0.1:7000?verify=no", "unknown Redis URL parameter(s): verify"),
    ],
)
def test_bad_urls_are_refused_when_opened(url: str, message: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_online_store(url)
    assert message in str(caught.value)


async def test_an_unreachable_seed_is_named_and_fails_fast() -> None:
    port = free_port()
    store = open_online_store(f"redis+cluster://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        await store.read([ReadRequest(VIEW, [b"k"])])
    assert time.monotonic() - started < 3
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "no node answered CLUSTER SLOTS" in str(caught.value)
    await store.close()


async def test_a_standalone_redis_is_not_a_cluster(redis_server: RedisServer) -> None:
    store = open_online_store(f"redis+cluster://127.0.0.1:{redis_server.port}")
    with pytest.raises(StoreError) as caught:
        await store.ping()
    assert "is not a Redis Cluster node" in str(caught.value)
    assert "cluster support disabled" in str(caught.value)
    await store.close()


async def test_uncovered_slots_are_unavailable_and_named(tmp_path: Path) -> None:
    node = start_cluster_node(tmp_path)
    half = RedisCluster([node], [])
    try:
        wait_for_ping(half, node)
        half.cli(node.port, "cluster", "addslotsrange", "0", "8191")
        store = open_online_store(f"redis+cluster://127.0.0.1:{node.port}")
        with pytest.raises(StoreUnavailableError) as caught:
            await store.ping()
        assert "slots 8192-16383 are served by no node (CLUSTERDOWN)" in str(caught.value)
        lost = next(
            k
            for k in (encode_key([i]) for i in range(100))
            if key_slot(storage_key(VIEW, k)) > 8191
        )
        with pytest.raises(StoreUnavailableError, match="is served by no node"):
            await store.read([ReadRequest(VIEW, [lost])])
        served = next(
            k
            for k in (encode_key([i]) for i in range(100))
            if key_slot(storage_key(VIEW, k)) <= 8191
        )
        with pytest.raises(StoreUnavailableError, match="CLUSTERDOWN"):
            await store.read([ReadRequest(VIEW, [served])])
        await store.close()
    finally:
        half.stop()


@pytest.mark.parametrize("change", TLS_FAULTS)
async def test_tls_and_credentials_faults_are_configuration_errors(
    tls_cluster: RedisCluster, tmp_path: Path, change: str
) -> None:
    seeds = ",".join(f"127.0.0.1:{node.port}" for node in tls_cluster.nodes)
    password, query = tls_fault(change, "s3cret-pass", tls_cluster.query, tmp_path)
    store = open_online_store(f"rediss+cluster://ferry:{password}@{seeds}?{query}")
    with pytest.raises(StoreAuthenticationError) as caught:
        await store.ping()
    assert password not in str(caught.value)
    assert "s3cret-pass" not in str(caught.value)
    await store.close()


def keys_in_slot(slot: int, count: int) -> list[bytes]:
    found = []
    for i in range(2_000_000):
        key = encode_key([i])
        if key_slot(storage_key(VIEW, key)) == slot:
            found.append(key)
            if len(found) == count:
                return found
    raise AssertionError(f"no {count} keys in slot {slot}")


async def start_migration(cluster: RedisCluster, key: bytes) -> tuple[int, int, int]:
    """Begin moving the slot of ``key`` (stored, alone in its slot) from its primary to
    another, and MIGRATE the key there; (slot, old owner's port, new owner's port)."""
    slot = key_slot(storage_key(VIEW, key))
    owner = next(
        p
        for p in cluster.primaries()
        if cluster.cli(p, "cluster", "countkeysinslot", str(slot)) == "1"
    )
    target = next(p for p in cluster.primaries() if p != owner)
    source_id, target_id = cluster.node_id(owner), cluster.node_id(target)
    cluster.cli(target, "cluster", "setslot", str(slot), "importing", source_id)
    cluster.cli(owner, "cluster", "setslot", str(slot), "migrating", target_id)
    node = RespConnection(f"redis://127.0.0.1:{owner}/0", 5, 2)
    await node.execute(
        b"MIGRATE", b"127.0.0.1", target, b"", 0, 5000, b"KEYS", storage_key(VIEW, key)
    )
    await node.close()
    return slot, owner, target


def finish_migration(cluster: RedisCluster, slot: int, target: int) -> None:
    """Give ``slot`` to the primary on port ``target``, on every primary."""
    target_id = cluster.node_id(target)
    for port in cluster.primaries():
        cluster.cli(port, "cluster", "setslot", str(slot), "node", target_id)


async def test_a_migrating_slot_is_followed_by_ask(
    fragile_cluster: RedisCluster, fragile_store: RedisClusterOnlineStore
) -> None:
    moved, fresh = keys_in_slot(key_slot(storage_key(VIEW, encode_key([7]))), 2)
    await fragile_store.write(VIEW, [(moved, row(1, 10))])
    slot, owner, target = await start_migration(fragile_cluster, moved)
    # The moved key and a key not stored yet both live on the target now: ASK, once each.
    assert value_of((await fragile_store.read([ReadRequest(VIEW, [moved])]))[0][0]) == (1, 10)
    assert (await fragile_store.write(VIEW, [(fresh, row(2, 20))])).written == 1
    assert fragile_cluster.cli(owner, "cluster", "countkeysinslot", str(slot)) == "0"
    finish_migration(fragile_cluster, slot, target)
    # The slot is the target's now: the store's next call hears MOVED and follows it.
    got = await fragile_store.read([ReadRequest(VIEW, [moved, fresh])])
    assert [value_of(v) for v in got[0]] == [(1, 10), (2, 20)]
    assert fragile_cluster.cli(target, "cluster", "countkeysinslot", str(slot)) == "2"


async def test_a_near_cache_stays_exact_across_a_slot_migration(
    fragile_cluster: RedisCluster, fragile_store: RedisClusterOnlineStore
) -> None:
    """A key cached from its old node, migrated, then written on its new node: the old
    node's invalidation (MIGRATE deletes the key there) is what keeps the cache exact."""
    cached = CachedOnlineStore(open_online_store(fragile_cluster.url), NearCache(CacheLimits()))
    (key,) = keys_in_slot(key_slot(storage_key(VIEW, encode_key([11]))), 1)
    await fragile_store.write(VIEW, [(key, row(1, 10))])
    for _ in range(2):
        assert value_of((await cached.read([ReadRequest(VIEW, [key])]))[0][0]) == (1, 10)
    assert cached.cache.counts.hits == 1
    slot, _, target = await start_migration(fragile_cluster, key)
    finish_migration(fragile_cluster, slot, target)
    assert (await fragile_store.write(VIEW, [(key, row(2, 20))])).written == 1  # on the target
    await cached.ping()  # one round trip to every primary, the old owner too
    assert value_of((await cached.read([ReadRequest(VIEW, [key])]))[0][0]) == (2, 20)
    assert fragile_cluster.cli(target, "cluster", "countkeysinslot", str(slot)) == "1"
    await cached.close()


class Load:
    """Bounded reads of random keys, each checked against the newest acknowledged write
    of its key before the read began (a read may see a newer one, never an older one)."""

    def __init__(
        self,
        store: RedisClusterOnlineStore,
        keys: list[bytes],
        reader: CachedOnlineStore | None = None,
    ) -> None:
        """``reader``: a near-cached store to read through instead of ``store``; a write
        counts as acknowledged once one round trip on every one of its read connections
        has followed it (its invalidations have arrived)."""
        self.store = store
        self.reader = reader
        self.keys = keys
        self.acknowledged = dict.fromkeys(keys, 1)  # key -> newest acknowledged version
        self.errors: list[tuple[float, str]] = []
        self.calls = 0
        self.wrong: list[str] = []
        self.stopped = False  # set to end the loops after their current call

    async def read(self, until: float, batch: int = 20) -> None:
        while time.monotonic() < until and not self.stopped:
            keys = random.sample(self.keys, batch)
            floor = [self.acknowledged[k] for k in keys]
            self.calls += 1
            try:
                reads = self.reader or self.store
                (got,) = await asyncio.wait_for(reads.read([ReadRequest(VIEW, keys)]), 1.0)
            except (StoreError, TimeoutError) as err:
                self.errors.append((time.monotonic(), repr(err)))
            else:
                for key, least, stored in zip(keys, floor, got, strict=True):
                    seen = value_of(stored)
                    if seen is None or seen[0] < least or seen[1] != seen[0] * 1000 + key[-1]:
                        self.wrong.append(f"{key!r}: {seen} before version {least}")
            await asyncio.sleep(0.005)

    async def write(self, until: float, batch: int = 50) -> None:
        version = 1
        while time.monotonic() < until and not self.stopped:
            version += 1
            keys = random.sample(self.keys, batch)
            try:
                await self.store.write(
                    VIEW, [(k, row(version, version * 1000 + k[-1])) for k in keys]
                )
            except StoreError as err:
                self.errors.append((time.monotonic(), repr(err)))
            else:
                await self._round_trip()
                for key in keys:
                    self.acknowledged[key] = version
            await asyncio.sleep(0.01)

    async def _round_trip(self) -> None:
        while self.reader is not None:
            try:
                await self.reader.ping()
                return
            except StoreError:
                await asyncio.sleep(0.01)


async def seeded_load(store: RedisClusterOnlineStore, count: int) -> Load:
    keys = [encode_key([i]) for i in range(count)]
    await store.write(VIEW, [(k, row(1, 1000 + k[-1])) for k in keys])
    return Load(store, keys)


@pytest.mark.parametrize("near_cache", [False, True], ids=["direct", "near-cached-reader"])
async def test_a_reshard_under_load_gives_no_wrong_answer(
    fragile_cluster: RedisCluster, fragile_store: RedisClusterOnlineStore, near_cache: bool
) -> None:
    load = await seeded_load(fragile_store, 3000)
    if near_cache:  # reads from memory where they can, kept exact by every node's tracking
        load.reader = CachedOnlineStore(
            open_online_store(fragile_cluster.url), NearCache(CacheLimits())
        )
    source, target = fragile_cluster.primaries()[:2]
    before = fragile_cluster.slots_of(target)
    reshard = [
        "--cluster",
        "reshard",
        f"127.0.0.1:{source}",
        "--cluster-from",
        fragile_cluster.node_id(source),
        "--cluster-to",
        fragile_cluster.node_id(target),
        "--cluster-slots",
        "1500",
        "--cluster-yes",
    ]
    until = time.monotonic() + 60
    moving = asyncio.create_task(
        asyncio.to_thread(fragile_cluster.cli, source, *reshard, timeout=60)
    )
    readers = [asyncio.create_task(load.read(until)) for _ in range(2)]
    writer = asyncio.create_task(load.write(until))
    await moving
    # Stopped, not cancelled: a write cancelled in flight may land without being counted
    # as acknowledged, and the check below compares every key with its acknowledged write.
    load.stopped = True
    await asyncio.gather(*readers, writer)
    assert load.wrong == []
    assert load.errors == []
    assert load.calls > 50
    # The slots moved, and the store follows: every key holds its newest acknowledged write.
    assert len(fragile_cluster.slots_of(target)) == len(before) + 1500
    (stored,) = await fragile_store.read([ReadRequest(VIEW, load.keys)])
    assert [value_of(v)[0] for v in stored] == [load.acknowledged[k] for k in load.keys]
    if load.reader is not None:
        assert load.reader.cache.counts.hits > 100
        assert load.reader.cache.counts.invalidations > 100
        await load.reader.close()


async def test_a_primary_killed_under_load_fails_calls_only_until_failover(
    fragile_cluster: RedisCluster, fragile_store: RedisClusterOnlineStore
) -> None:
    load = await seeded_load(fragile_store, 2000)
    doomed = fragile_cluster.primaries()[0]
    # Keys every other primary serves: their calls must not fail for the lost node.
    lost = fragile_cluster.slots_of(doomed)
    spared = [k for k in load.keys if key_slot(storage_key(VIEW, k)) not in lost]
    others = Load(fragile_store, spared)
    start = time.monotonic()
    until = start + 25
    tasks = [asyncio.create_task(load.read(until)), asyncio.create_task(others.read(until))]
    await asyncio.sleep(1)
    killed_at = time.monotonic()
    fragile_cluster.kill(doomed)
    # Stop once calls have succeeded for 2 s after the last error (bounded by ``until``).
    while time.monotonic() < until:
        await asyncio.sleep(0.2)
        last = load.errors[-1][0] if load.errors else killed_at
        if load.errors and time.monotonic() - last > 2:
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert load.wrong == []
    assert others.wrong == []
    # Keys of the other primaries fail only while the cluster itself says it is down
    # (a primary marked failed and not yet replaced: cluster-require-full-coverage).
    assert all("CLUSTERDOWN" in e for _, e in others.errors), others.errors[:3]
    assert all(killed_at <= at < killed_at + 10 for at, _ in others.errors)
    assert load.errors, "killing a primary failed no call"
    window = load.errors[-1][0] - killed_at
    assert all(at >= killed_at for at, _ in load.errors)
    assert window < 10, f"calls failed for {window:.1f} s after the kill"
    assert all("StoreUnavailableError" in e or "TimeoutError" in e for _, e in load.errors)
    # Answers again, without reopening the store; the killed node rejoins as a replica.
    (stored,) = await fragile_store.read([ReadRequest(VIEW, load.keys)])
    assert all(value_of(v) is not None for v in stored)
    fragile_cluster.restart(doomed)
    print(f"failover window {window:.2f} s, {len(load.errors)} of {load.calls} calls failed")

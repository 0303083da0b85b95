"""Online store on a Redis Cluster, with the standalone store's layout and conditional-write
script (``ferry.stores.redis_commands``) and ``ferry.stores.cluster`` for the routing.

A cluster runs a multi-key command only when all its keys share one slot, so a read sends
one MGET per slot of the request's keys and a write one script call per slot group (each
slot's rows in chunks of ``SCRIPT_KEYS``); the router pipelines them per primary and asks
the primaries concurrently. A batch of 100 random keys touches about 100 slots: the cost
per key is then that of a pipelined GET, not of a share of one MGET (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ferry.core.errors import StoreError, StoreUnavailableError
from ferry.stores.base import (
    ReadRequest,
    ViewTable,
    WriteResult,
    per_request,
    storage_key,
    storage_keys,
)
from ferry.stores.cluster import ClusterRouter, ClusterUrl, Command, key_slot
from ferry.stores.redis import RedisConfig
from ferry.stores.redis_commands import (
    CONDITIONAL_SET,
    SCRIPT_KEYS,
    conditional_set,
    raise_watermark,
    watermarks_key,
)
from ferry.stores.resp import InvalidationSink

_READS, _WRITES = "reads", "writes"


class RedisClusterOnlineStore:
    """Online store on a Redis Cluster (``redis+cluster://HOST:PORT[,HOST:PORT...]``, or
    ``rediss+cluster://`` for TLS). Nothing is retried beyond what the cluster's own
    redirections ask for: a lost primary fails the calls that needed it until a replica
    is promoted (about the node timeout plus a second), then calls succeed again."""

    natural_batching_reads = 0  # pipelined, as the standalone store

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self._router = ClusterRouter(
            ClusterUrl.parse(config.url), config.socket_timeout_s, config.connect_timeout_s
        )

    def track_into(self, sink: InvalidationSink) -> None:
        """Keep a near cache exact: every primary tells ``sink`` of changes to the keys
        read from it (``ClusterRouter.track``)."""
        self._router.track(_READS, sink)

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        keys = storage_keys(requests)
        by_slot: dict[int, list[int]] = {}
        for position, key in enumerate(keys):
            by_slot.setdefault(key_slot(key), []).append(position)
        routed = [
            (slot, (b"MGET", *[keys[p] for p in positions])) for slot, positions in by_slot.items()
        ]
        values: list[bytes | None] = [None] * len(keys)
        if routed:
            replies = await self._router.execute(routed, _READS)
            for positions, reply in zip(by_slot.values(), replies, strict=True):
                for position, value in zip(positions, reply, strict=True):
                    values[position] = value
        return per_request(requests, values)

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        if not rows:
            return WriteResult(0, 0)
        now_ms = time.time_ns() // 1_000_000
        by_slot: dict[int, list[tuple[bytes, bytes]]] = {}
        for entity_key, row in rows:
            by_slot.setdefault(key_slot(storage_key(table, entity_key)), []).append(
                (entity_key, row)
            )
        routed: list[tuple[int, Command]] = [
            (slot, conditional_set(table, group[start : start + SCRIPT_KEYS], now_ms))
            for slot, group in by_slot.items()
            for start in range(0, len(group), SCRIPT_KEYS)
        ]
        try:
            counts = await self._router.execute(routed, _WRITES)
        except StoreError as err:
            if "NOSCRIPT" not in str(err):
                raise
            # A restarted or newly promoted primary lacks the script: load it on every
            # primary and go again (rows the first attempt wrote are skipped as not newer).
            await self._router.on_every_primary(
                (b"SCRIPT", b"LOAD", CONDITIONAL_SET.encode()), _WRITES
            )
            counts = await self._router.execute(routed, _WRITES)
        written = sum(int(c) for c in counts)
        return WriteResult(written, len(rows) - written)

    async def delete(self, table: ViewTable, keys: Sequence[bytes]) -> int:
        by_slot: dict[int, list[bytes]] = {}
        for entity_key in keys:
            stored = storage_key(table, entity_key)
            by_slot.setdefault(key_slot(stored), []).append(stored)
        if not by_slot:
            return 0
        routed = [(slot, (b"DEL", *group)) for slot, group in by_slot.items()]
        return sum(int(n) for n in await self._router.execute(routed, _WRITES))

    async def read_watermarks(self, project: str, views: Sequence[str]) -> dict[str, int]:
        if not views:
            return {}
        key = watermarks_key(project)
        (values,) = await self._router.execute([(key_slot(key), (b"HMGET", key, *views))], _READS)
        return {view: int(v) for view, v in zip(views, values, strict=True) if v is not None}

    async def write_watermark(self, project: str, view: str, micros: int) -> None:
        slot = key_slot(watermarks_key(project))
        await self._router.execute([(slot, raise_watermark(project, view, micros))], _WRITES)

    async def initialize(self) -> str:
        await self.ping()
        return "a Redis Cluster needs nothing created: keys are written as they come"

    async def ping(self) -> None:
        """Every primary answers PING and every slot is served."""
        await self._router.refresh()
        uncovered = self._router.uncovered()
        if uncovered:
            shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in uncovered[:5])
            raise StoreUnavailableError(
                f"Redis Cluster: slots {shown} are served by no node (CLUSTERDOWN)"
            )
        await self._router.on_every_primary((b"PING",), _READS)

    async def close(self) -> None:
        await self._router.close()

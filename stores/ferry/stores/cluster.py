"""Commands to a Redis Cluster: the slot map, one pipelined connection per primary and lane,
and the redirections a cluster answers with.

A key's slot is CRC16 of the key (or of its ``{hash tag}``) mod 16384; the slot map, read
with CLUSTER SLOTS from any node that answers, says which primary serves each slot. A
caller hands over (slot, command) pairs; each primary gets its commands in one pipelined
write, all primaries at once, and the replies come back in the caller's order.

What a cluster answers, and what happens:

* ``MOVED slot host:port`` (the slot lives elsewhere now: a failover or a reshard): that
  slot is sent to the new node at once, and the whole map is read again before the next
  call;
* ``ASK slot host:port`` (the slot is migrating and the key is already there): the command
  goes to that node once, preceded by ASKING, without changing the map;
* ``TRYAGAIN`` (a multi-key command met a half-migrated slot): sent again after a short
  pause, a few times;
* a connection lost or timed out (a primary killed): that call fails unavailable, and the
  map is read again before the next call, so calls succeed again as soon as the cluster
  has promoted a replica, without restarting anything.
"""

from __future__ import annotations

import asyncio
import binascii
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ferry.core.errors import StoreError, StoreUnavailableError
from ferry.stores.resp import (
    InvalidationSink,
    RedirectError,
    RespConnection,
    StoreAuthenticationError,
    TryAgainError,
)

SLOTS = 16384
_REDIRECTIONS = 5  # per call; a reshard moves a slot once, a failover once
_TRY_AGAIN_PAUSE_S = 0.02
_REFRESH_INTERVAL_S = 0.1  # at most this often while the map is stale (a failover)

Address = tuple[str, int]
Command = tuple[bytes | str | int, ...]


def key_slot(key: bytes) -> int:
    """The cluster slot of a key: CRC16 (XMODEM, as ``binascii.crc_hqx`` from 0) of the key,
    or of the part between its first ``{`` and the next ``}`` when that part is not empty."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) % SLOTS


@dataclass(frozen=True)
class ClusterUrl:
    """A ``redis+cluster://`` (or ``rediss+cluster://``, TLS) URL, parsed.

    Attributes:
        seeds: The nodes named in the URL; any one that answers gives the slot map.
        scheme: ``redis`` or ``rediss``: what each node's connection speaks.
        userinfo: ``user:password@`` (or ``:password@``, or empty), for every node.
        query: TLS parameters, for every node (``ferry.stores.resp``).
    """

    seeds: tuple[Address, ...]
    scheme: str
    userinfo: str
    query: str

    @classmethod
    def parse(cls, url: str) -> ClusterUrl:
        """Raises:
        StoreError: no node, a node without a port, or a database other than 0."""
        parts = urlsplit(url)
        scheme = parts.scheme.removesuffix("+cluster")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        if parts.path.strip("/") not in ("", "0"):
            raise StoreError("a Redis Cluster has database 0 only: leave the path out")
        seeds = []
        for node in filter(None, hosts.split(",")):
            try:
                named = urlsplit(f"//{node}")
                host, port = named.hostname, named.port
            except ValueError as err:
                raise StoreError(f"Redis Cluster node {node!r}: {err}") from err
            if not host or port is None:
                raise StoreError(f"Redis Cluster node {node!r}: expected HOST:PORT")
            seeds.append((host, port))
        if not seeds:
            raise StoreError(f"expected {parts.scheme}://HOST:PORT[,HOST:PORT...]")
        return cls(tuple(seeds), scheme, f"{userinfo}@" if userinfo else "", parts.query)

    def node_url(self, address: Address) -> str:
        host, port = address
        shown = f"[{host}]" if ":" in host else host
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.userinfo}{shown}:{port}/0{query}"

    @property
    def user(self) -> str:
        """The ACL user named, if any (for messages: never the password)."""
        return unquote(self.userinfo.partition(":")[0])


class ClusterRouter:
    """Routes commands by slot to the primaries of one Redis Cluster.

    ``lane`` keeps traffic apart: each primary has one connection per lane (the store reads
    on one and writes on another, so a large write never queues reads behind it).
    """

    def __init__(self, url: ClusterUrl, command_timeout_s: float, connect_timeout_s: float):
        self._url = url
        self._timeouts = (command_timeout_s, connect_timeout_s)
        self._slots: list[Address | None] = [None] * SLOTS
        self._known: list[Address] = list(url.seeds)
        self._connections: dict[tuple[Address, str], RespConnection] = {}
        self._sinks: dict[str, InvalidationSink] = {}  # lane -> its tracking's sink
        self._stale = True
        self._loaded = False  # a map was read once: later refreshes run behind the calls
        self._refreshed_at = -_REFRESH_INTERVAL_S
        self._refreshing: asyncio.Future[None] | None = None
        self._connection(url.seeds[0], "reads")  # checks the URL's TLS parameters now

    async def execute(self, routed: Sequence[tuple[int, Command]], lane: str) -> list[Any]:
        """Each (slot, command)'s reply, in order.

        Raises:
            StoreUnavailableError: a node could not be reached or timed out, a slot is served
                by no node, or the redirections did not settle.
            StoreError: a node answered a command with an error (the first such).
        """
        await self._map()
        replies: list[Any] = [None] * len(routed)
        pending = list(range(len(routed)))
        asking: dict[int, Address] = {}
        for _ in range(_REDIRECTIONS + 1):
            retry: list[int] = []
            migrating = False
            for index, reply in await self._send_pending(routed, pending, asking, lane):
                if isinstance(reply, RedirectError):
                    if reply.kind == "MOVED":
                        self._slots[reply.slot] = reply.address
                        self._stale = True
                        asking.pop(index, None)
                    else:
                        asking[index] = reply.address
                    retry.append(index)
                elif isinstance(reply, TryAgainError):
                    retry.append(index)
                    migrating = True
                elif isinstance(reply, StoreError):
                    raise reply
                else:
                    replies[index] = reply
                    asking.pop(index, None)
            if not retry:
                return replies
            if migrating:  # give the migration of those keys time to finish
                await asyncio.sleep(_TRY_AGAIN_PAUSE_S)
            pending = retry
        raise StoreUnavailableError(
            f"Redis Cluster: slots kept moving after {_REDIRECTIONS} redirections"
        )

    async def _send_pending(
        self,
        routed: Sequence[tuple[int, Command]],
        pending: list[int],
        asking: dict[int, Address],
        lane: str,
    ) -> list[tuple[int, Any]]:
        by_node: dict[Address, list[int]] = {}
        for index in pending:
            node = asking.get(index) or self._slots[routed[index][0]]
            if node is None:
                self._stale = True
                raise StoreUnavailableError(
                    f"Redis Cluster: slot {routed[index][0]} is served by no node "
                    "(CLUSTERDOWN: the cluster does not cover every slot)"
                )
            by_node.setdefault(node, []).append(index)
        sent = [
            self._send(node, lane, [(routed[i][1], i in asking) for i in indices])
            for node, indices in by_node.items()
        ]
        answers = await asyncio.gather(*sent, return_exceptions=True)
        out: list[tuple[int, Any]] = []
        for indices, answer in zip(by_node.values(), answers, strict=True):
            if isinstance(answer, BaseException):
                if isinstance(answer, StoreUnavailableError):
                    self._stale = True  # a node lost: the map may have changed
                raise answer
            out.extend(zip(indices, answer, strict=True))
        return out

    async def _send(
        self, node: Address, lane: str, commands: list[tuple[Command, bool]]
    ) -> list[Any]:
        """One pipelined write to one node; a command sent after an ASK is preceded by
        ASKING (whose OK is dropped)."""
        flat: list[Command] = []
        for command, asked in commands:
            if asked:
                flat.append((b"ASKING",))
            flat.append(command)
        replies = await self._connection(node, lane).execute_each(flat)
        if len(flat) == len(commands):
            return replies
        out, position = [], 0
        for _, asked in commands:
            position += asked
            out.append(replies[position])
            position += 1
        return out

    def track(self, lane: str, sink: InvalidationSink) -> None:
        """Client-side caching on every connection of ``lane``, to every node, now and
        later (``RespConnection.track``): each node invalidates the keys read from it, a
        key migrated away is invalidated by its old node (MIGRATE deletes it there), and
        any of the lane's connections dropping flushes ``sink``."""
        self._sinks[lane] = sink
        for (_, connection_lane), connection in self._connections.items():
            if connection_lane == lane:
                connection.track(sink)

    def _connection(self, node: Address, lane: str) -> RespConnection:
        connection = self._connections.get((node, lane))
        if connection is None:
            connection = RespConnection(self._url.node_url(node), *self._timeouts)
            if lane in self._sinks:
                connection.track(self._sinks[lane])
            self._connections[(node, lane)] = connection
        return connection

    def primaries(self) -> list[Address]:
        """The primaries of the current map, each once."""
        return list(dict.fromkeys(node for node in self._slots if node is not None))

    async def on_every_primary(self, command: Command, lane: str) -> list[Any]:
        """Run one command on every primary (PING, SCRIPT LOAD); their replies."""
        await self._map()
        nodes = self.primaries()
        if not nodes:
            raise StoreUnavailableError("Redis Cluster: no node serves any slot (CLUSTERDOWN)")
        try:
            return list(
                await asyncio.gather(*(self._connection(n, lane).execute(*command) for n in nodes))
            )
        except StoreUnavailableError:
            self._stale = True
            raise

    def uncovered(self) -> list[tuple[int, int]]:
        """Ranges of slots no node serves (a cluster answers CLUSTERDOWN while any exist)."""
        ranges: list[tuple[int, int]] = []
        for slot, node in enumerate(self._slots):
            if node is None:
                if ranges and ranges[-1][1] == slot - 1:
                    ranges[-1] = (ranges[-1][0], slot)
                else:
                    ranges.append((slot, slot))
        return ranges

    async def _map(self) -> None:
        """A slot map to route by: the first call waits for one; later, a stale map is read
        again behind the calls, which go on with what is known (a MOVED has already
        corrected its slot; a call for a lost primary's slot fails fast either way)."""
        if not self._loaded:
            await self.refresh()
        elif self._stale:
            self._start_refresh()

    async def refresh(self) -> None:
        """Read the slot map again and wait for it (concurrent callers share one read;
        while the map stays stale, at most every ``_REFRESH_INTERVAL_S``)."""
        refreshing = self._start_refresh()
        if refreshing is not None:
            await asyncio.shield(refreshing)

    def _start_refresh(self) -> asyncio.Future[None] | None:
        if self._refreshing is None or self._refreshing.done():
            wait = self._refreshed_at + _REFRESH_INTERVAL_S - time.monotonic()
            if not self._stale or wait > 0:
                return None
            self._refreshing = asyncio.ensure_future(self._read_slot_map())
            self._refreshing.add_done_callback(_seen)
        return self._refreshing

    async def _read_slot_map(self) -> None:
        self._refreshed_at = time.monotonic()
        failures = []
        # Each probe is bounded by the connect timeout: a frozen node must not hold the
        # map (and the calls waiting for it) for a whole command timeout.
        probe_timeout = self._timeouts[1]
        for node in list(dict.fromkeys([*self.primaries(), *self._known, *self._url.seeds])):
            probe = RespConnection(self._url.node_url(node), probe_timeout, probe_timeout)
            try:
                reply = await probe.execute(b"CLUSTER", b"SLOTS")
            except StoreAuthenticationError:
                raise  # the same credentials and TLS files go to every node
            except StoreUnavailableError as err:
                failures.append(str(err))
                continue
            except StoreError as err:  # e.g. "ERR This instance has cluster support disabled"
                raise StoreError(f"{node[0]}:{node[1]} is not a Redis Cluster node: {err}") from err
            finally:
                await probe.close()
            self._apply(node, reply)
            return
        raise StoreUnavailableError(
            "Redis Cluster: no node answered CLUSTER SLOTS: " + "; ".join(failures)
        )

    def _apply(self, asked: Address, reply: list[Any]) -> None:
        slots: list[Address | None] = [None] * SLOTS
        known: list[Address] = []
        for start, end, *nodes in reply:
            addresses = [_address_of(node, asked) for node in nodes]
            known.extend(addresses)
            slots[start : end + 1] = [addresses[0]] * (end + 1 - start)
        # Connections to nodes that are no longer primaries stay: closing one could fail a
        # command in flight on it that would otherwise get its MOVED and be sent again.
        self._slots, self._known, self._stale, self._loaded = slots, known, False, True

    async def close(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
        for connection in self._connections.values():
            await connection.close()
        self._connections.clear()


def _address_of(node: list[Any], asked: Address) -> Address:
    """A node of a CLUSTER SLOTS reply: an empty or unknown IP means the node asked."""
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    if host in ("", "?"):
        host = asked[0]
    return (host, int(node[1]))


def _seen(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()

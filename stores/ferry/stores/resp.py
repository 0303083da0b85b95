"""A lean Redis connection for the serving hot path: RESP over one pipelined asyncio socket.

redis-py spends ~120-140 µs of CPU per MGET in its general machinery (pool checkout, command
objects, response callbacks, retries, locks); serving does one MGET per request, so that is
most of what Ferry adds to a gRPC call. This connection does the least that is correct:
commands are packed and replies parsed by hiredis (C), every command is written at once
and its reply matched in order (Redis answers one connection's commands in order), so any
number of concurrent requests share one connection without waiting for each other.

Failure handling: a lost connection fails every outstanding command with
``StoreUnavailableError`` and the next command reconnects; a connection whose oldest command
has waited longer than the command timeout is closed, for the same outcome (a frozen server
must not hold requests, or a materialization job, forever), checked by one timer per
connection. A caller that stops waiting (a cancelled request) leaves
its reply to be read and dropped, which keeps the order intact.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from ferry.core.errors import StoreError, StoreUnavailableError


class StoreAuthenticationError(StoreUnavailableError):
    """Redis refused the credentials (or the database) of the store URL: a configuration
    error, reported as unavailable (nothing is served) with a reason of its own."""

    reason = "STORE_AUTHENTICATION_FAILED"


class TrackingRefusedError(StoreUnavailableError):
    """Redis refused to track the keys a near cache reads (before Redis 6, or an ACL user
    without HELLO or CLIENT): a configuration error, nothing is served."""

    reason = "STORE_TRACKING_REFUSED"


class RedirectError(StoreError):
    """A Redis Cluster node does not serve the command's slot: ``MOVED`` (the slot lives
    at ``address`` now) or ``ASK`` (it is migrating there: ask that node once)."""

    def __init__(self, message: str, kind: str, slot: int, address: tuple[str, int]) -> None:
        super().__init__(message)
        self.kind = kind
        self.slot = slot
        self.address = address


class TryAgainError(StoreUnavailableError):
    """A multi-key command met a slot whose keys are half migrated (resharding): the same
    command succeeds once the migration of those keys is done."""


_UNAVAILABLE_REPLIES = ("LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN")
_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")


def reply_error(where: str, reply: str) -> StoreError:
    """The error a Redis error reply stands for: the server's state (loading, busy, at
    maxclients: unavailable, retry later), the credentials (authentication), a cluster's
    redirection, or the command itself (a plain store error)."""
    message = f"{where} failed: {reply}"
    if reply.startswith(("MOVED ", "ASK ")):
        kind, slot, address = reply.split(" ", 2)
        host, _, port = address.rpartition(":")
        return RedirectError(message, kind, int(slot), (host.strip("[]"), int(port)))
    if reply.startswith("TRYAGAIN"):
        return TryAgainError(message)
    if reply.startswith(_AUTH_REPLIES):
        return StoreAuthenticationError(message)
    if reply.startswith(_UNAVAILABLE_REPLIES) or "max number of clients" in reply:
        return StoreUnavailableError(message)
    return StoreError(message)


class _Replies:
    """One future for the replies of several pipelined commands, errors in place: a future
    per command (a cluster sends one per slot) cost more than packing the commands."""

    __slots__ = ("future", "remaining", "replies", "where")

    def __init__(self, future: asyncio.Future[list[Any]], count: int, where: str) -> None:
        self.future = future
        self.remaining = count
        self.replies: list[Any] = []
        self.where = where

    def add(self, reply: Any) -> bool:
        """Take the next reply; True once all have come."""
        if isinstance(reply, hiredis.ReplyError):
            reply = reply_error(self.where, str(reply))
        self.replies.append(reply)
        self.remaining -= 1
        if self.remaining:
            return False
        if not self.future.done():  # its caller may have given up waiting
            self.future.set_result(self.replies)
        return True


class InvalidationSink(Protocol):
    """Told of Redis's client-side caching invalidations (``ferry.stores.near_cache``)."""

    def invalidate(self, keys: Iterable[bytes]) -> None:
        """A writer changed these keys."""

    def flush(self) -> None:
        """Invalidations may have been lost (the connection dropped or was replaced), or
        Redis flushed its keys: forget everything."""


class _Protocol(asyncio.Protocol):
    """Matches replies to outstanding commands, in order; hands RESP3 invalidation pushes,
    which come between replies, to the connection's sink."""

    def __init__(self, where: str, sink: InvalidationSink | None = None) -> None:
        self._where = where
        self._sink = sink
        self._reader = hiredis.Reader()
        self.waiters: deque[tuple[asyncio.Future[Any] | _Replies, float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiters = self.waiters
        while (reply := self._reader.gets()) is not False:
            if type(reply) is hiredis.PushNotification:
                self._pushed(reply)
                continue
            waiter = waiters[0][0]
            if isinstance(waiter, _Replies):
                if waiter.add(reply):
                    waiters.popleft()
                continue
            waiters.popleft()
            if waiter.done():  # its caller gave up waiting
                continue
            if isinstance(reply, hiredis.ReplyError):
                waiter.set_exception(reply_error(self._where, str(reply)))
            else:
                waiter.set_result(reply)

    def _pushed(self, message: list[Any]) -> None:
        if self._sink is None or len(message) != 2 or message[0] != b"invalidate":
            return
        keys = message[1]
        if keys is None:  # FLUSHALL, FLUSHDB
            self._sink.flush()
        else:
            self._sink.invalidate(keys)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.fail(StoreUnavailableError(f"{self._where} closed the connection: {exc or 'EOF'}"))

    def fail(self, error: Exception) -> None:
        if self._sink is not None:  # no more invalidations come for what was read here
            self._sink.flush()
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiters:
            waiter, _ = self.waiters.popleft()
            future = waiter.future if isinstance(waiter, _Replies) else waiter
            if not future.done():
                future.set_exception(error)


def _tls_of(
    scheme: str, query: dict[str, list[str]], host: str
) -> tuple[ssl.SSLContext | None, str | None]:
    """The TLS context of a ``rediss://`` URL (None for ``redis://``) and the name the
    server's certificate must carry.

    Query parameters: ``ca`` (PEM CA file; default the system's roots), ``cert`` and ``key``
    (a client certificate, for servers that require one), ``server_name`` (default the host).

    Raises:
        StoreError: a file that cannot be read, or a cert without its key.
    """
    unknown = set(query) - {"ca", "cert", "key", "server_name"}
    if unknown:
        raise StoreError(f"unknown Redis URL parameter(s): {', '.join(sorted(unknown))}")
    if scheme != "rediss":
        if query:
            raise StoreError("TLS parameters need a rediss:// URL")
        return None, None
    (ca,) = query.get("ca", [None])
    (cert,) = query.get("cert", [None])
    (key,) = query.get("key", [None])
    (name,) = query.get("server_name", [host])
    if (cert is None) != (key is None):
        raise StoreError("a Redis client certificate needs both cert= and key=")
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert is not None:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise StoreError(f"cannot use the Redis TLS files: {err}") from err
    return context, name


class RespConnection:
    """One pipelined connection to a Redis server, reconnecting on demand."""

    def __init__(self, url: str, command_timeout_s: float, connect_timeout_s: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._where = f"{parts.scheme or 'redis'} at {self._host}:{self._port}"
        self._tls, self._server_name = _tls_of(parts.scheme, parse_qs(parts.query), self._host)
        self._setup: list[tuple[bytes, ...]] = []
        if parts.password:
            password = unquote(parts.password).encode()
            if parts.username:  # an ACL user
                self._setup.append((b"AUTH", unquote(parts.username).encode(), password))
            else:
                self._setup.append((b"AUTH", password))
        database = parts.path.strip("/")
        if database and database != "0":
            self._setup.append((b"SELECT", database.encode()))
        self._command_timeout_s = command_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._sink: InvalidationSink | None = None

    def track(self, sink: InvalidationSink) -> None:
        """Have Redis track the keys this connection reads and tell ``sink`` when they
        change (RESP3 ``CLIENT TRACKING ON``, default mode, invalidations on this same
        connection: they arrive in order with the replies, and a dropped connection is the
        one signal that invalidations were lost). A connection open already is replaced."""
        self._sink = sink
        self._setup += [(b"HELLO", b"3"), (b"CLIENT", b"TRACKING", b"ON")]
        if self._protocol is not None:
            self._abandon(self._protocol, "replaced by a tracking connection")
            self._protocol = None

    async def execute(self, *args: bytes | str | int) -> Any:
        """Send one command and return its reply.

        Raises:
            StoreUnavailableError: no connection, or it was lost or timed out.
            StoreError: Redis answered with an error.
        """
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        return await self._send(protocol, _pack(args))

    async def execute_many(self, commands: Sequence[tuple[bytes | str | int, ...]]) -> list[Any]:
        """Send several commands in one write; their replies, in order.

        Raises:
            StoreUnavailableError, StoreError: as ``execute``, for the first that failed.
        """
        replies = await self.execute_each(commands)
        for reply in replies:
            if isinstance(reply, StoreError):
                raise reply
        return replies

    async def execute_each(
        self, commands: Sequence[tuple[bytes | str | int, ...]]
    ) -> list[Any | StoreError]:
        """Send several commands in one write; each one's reply or error, in order (a Redis
        Cluster client acts on each command's redirection by itself).

        Raises:
            StoreUnavailableError: no connection, or it was lost or timed out; or a reply
                says the server cannot serve now (other than TRYAGAIN, left in place).
        """
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        payload = b"".join([_pack(command) for command in commands])
        replies = _Replies(asyncio.get_running_loop().create_future(), len(commands), self._where)
        self._enqueue(protocol, payload, [replies])
        answered = await replies.future
        for reply in answered:
            if isinstance(reply, StoreUnavailableError) and not isinstance(reply, TryAgainError):
                raise reply
        return answered

    def _send(self, protocol: _Protocol, payload: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(protocol, payload, [future])
        return future

    def _enqueue(
        self, protocol: _Protocol, payload: bytes, waiting: list[asyncio.Future[Any] | _Replies]
    ) -> None:
        transport = protocol.transport
        # A server that accepts and closes at once (maxclients, a proxy without a backend)
        # leaves a closed transport behind: writing to it raises, in uvloop a RuntimeError.
        if protocol.lost or transport is None or transport.is_closing():
            protocol.lost = True
            raise StoreUnavailableError(f"{self._where} closed the connection")
        now = time.monotonic()
        for waiter in waiting:
            protocol.waiters.append((waiter, now))
        try:
            transport.write(payload)
        except (RuntimeError, OSError) as err:
            for waiter in waiting:  # this caller hears of it by the raise below
                (waiter.future if isinstance(waiter, _Replies) else waiter).cancel()
            self._abandon(protocol, f"write failed: {err}")
            raise StoreUnavailableError(f"{self._where}: write failed: {err}") from err
        if protocol.watchdog is None:
            self._arm(protocol)

    def _arm(self, protocol: _Protocol) -> None:
        """Check the oldest outstanding command when it reaches the timeout: one timer per
        connection, not one per command, so even a last command never waits forever."""
        oldest = protocol.waiters[0][1]
        delay = max(0.0, oldest + self._command_timeout_s - time.monotonic())
        protocol.watchdog = asyncio.get_running_loop().call_later(delay, self._check, protocol)

    def _check(self, protocol: _Protocol) -> None:
        protocol.watchdog = None
        if protocol.lost or not protocol.waiters:
            return
        if time.monotonic() - protocol.waiters[0][1] >= self._command_timeout_s:
            self._abandon(protocol, f"no reply within {self._command_timeout_s:g} s")
        else:
            self._arm(protocol)

    async def _connect(self) -> _Protocol:
        # Concurrent callers share one connection attempt.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
            # Its callers may all stop waiting (shield): the failure is still theirs to see,
            # never "Task exception was never retrieved".
            self._connecting.add_done_callback(_seen)
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Protocol(self._where, self._sink),
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._server_name,
                ),
                self._connect_timeout_s,
            )
        except ssl.SSLError as err:  # a certificate that does not verify: configuration
            raise StoreAuthenticationError(f"{self._where}: TLS failed: {err}") from err
        except (OSError, TimeoutError) as err:
            raise StoreUnavailableError(f"{self._where} is unreachable: {err!r}") from err
        command: tuple[bytes, ...] = ()
        try:
            for command in self._setup:
                await asyncio.wait_for(
                    self._send(protocol, _pack(command)), self._connect_timeout_s
                )
        except StoreError as err:
            self._abandon(protocol, "setup failed")
            if type(err) is StoreUnavailableError:  # lost, or the server cannot serve now
                raise
            refusal = str(err).removeprefix(f"{self._where} failed: ")
            if command[0] in (b"HELLO", b"CLIENT"):
                raise TrackingRefusedError(
                    f"{self._where} refused client-side caching ({b' '.join(command).decode()}):"
                    f" {refusal}; a near cache needs Redis 6 or later, and an ACL user allowed "
                    "HELLO and CLIENT"
                ) from err
            raise StoreAuthenticationError(  # Redis refused AUTH or SELECT
                f"{self._where} refused the URL's credentials or database: {refusal}"
            ) from err
        except TimeoutError as err:
            self._abandon(protocol, "setup failed")
            raise StoreUnavailableError(f"{self._where} did not answer its setup") from err
        # No flush here: the lost connection's flush (``_Protocol.fail``) already kept out
        # every read sent before it, and reads sent from now on are tracked here.
        self._protocol = protocol
        return protocol

    def _abandon(self, protocol: _Protocol, why: str) -> None:
        protocol.lost = True
        protocol.fail(StoreUnavailableError(f"{self._where}: {why}"))
        if protocol.transport is not None:
            protocol.transport.abort()

    async def close(self) -> None:
        """Close the connection; outstanding commands fail."""
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._protocol is not None:
            self._abandon(self._protocol, "connection closed")
            self._protocol = None


def _seen(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _pack(command: tuple[bytes | str | int, ...]) -> bytes:
    """A command in RESP. (hiredis's type stub declares a 1-tuple; any length works.)"""
    return hiredis.pack_command(command)  # type: ignore[arg-type,no-any-return]

"""A TCP proxy for fault tests: put it between Ferry and a real service, then switch modes.

Modes: ``pass`` (forward both ways), ``latency`` (forward, each chunk delayed), ``blackhole``
(accept and read, never forward or answer), ``reset`` (accept, then abort with a TCP RST),
``refuse`` (stop listening: connections are refused) and ``accept_close`` (accept, then
close at once, as a service at its connection limit or a balancer without a backend does).
Switching mode drops every connection open through the proxy, so the next one meets the
new behaviour. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Literal

Mode = Literal["pass", "latency", "blackhole", "reset", "refuse", "accept_close"]


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream_port``."""

    def __init__(self, upstream_port: int, latency_s: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.latency_s = latency_s
        self.mode: Mode = "pass"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        await self._listen()
        return self.port

    async def set_mode(self, mode: Mode, latency_s: float | None = None) -> None:
        if latency_s is not None:
            self.latency_s = latency_s
        self.mode = mode
        for writer in list(self._open):
            _abort(writer)
        self._open.clear()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif mode != "refuse" and self._server is None:
            await self._listen()

    async def stop(self) -> None:
        await self.set_mode("refuse")

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        if mode == "accept_close":
            writer.close()
            return
        if mode == "reset":
            _abort(writer)
            return
        self._open.add(writer)
        try:
            if mode == "blackhole":
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._open.add(up_writer)
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        except OSError:
            pass
        finally:
            for end in (writer,):
                _abort(end)
                self._open.discard(end)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if self.mode == "latency" and self.latency_s:
                    await asyncio.sleep(self.latency_s)
                sink.write(data)
                await sink.drain()
        finally:
            _abort(sink)
            self._open.discard(sink)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a RST (SO_LINGER 0), not a FIN: the peer sees a reset connection."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(Exception):
        writer.transport.abort()

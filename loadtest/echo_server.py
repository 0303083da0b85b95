"""The floor: a bare grpc.aio + uvloop server that answers every unary method of every
service by echoing the request bytes, with no parsing at all. Load tests run the same client
settings against it and quote Ferry's figures as ratios to it.

    python loadtest/echo_server.py [PORT [WORKERS]]  # prints {"event": "serving", ...} per process
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import uvloop


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def echo_stream(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


class EchoEverything(grpc.GenericRpcHandler):
    """A handler for any method name: no per-service registration, no (de)serializers.
    Methods named ``.../Stream*`` are bidirectional streams, the rest unary."""

    def __init__(self) -> None:
        self._unary = grpc.unary_unary_rpc_method_handler(echo)
        self._stream = grpc.stream_stream_rpc_method_handler(echo_stream)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        name = handler_call_details.method.rsplit("/", 1)[-1]
        return self._stream if name.startswith("Stream") else self._unary


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers((EchoEverything(),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    # One write per line: the workers share stdout, and print() may split text and newline.
    line = json.dumps({"event": "serving", "address": f"127.0.0.1:{bound}", "pid": os.getpid()})
    os.write(1, (line + "\n").encode())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def run(port: int) -> None:
    uvloop.run(serve(port))


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    if workers <= 1:
        run(port)
        return
    # Several processes on one port (SO_REUSEPORT), as `ferry serve --workers N`.
    if port == 0:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=run, args=(port,)) for _ in range(workers)]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    for process in processes:
        process.join()


if __name__ == "__main__":
    main()

"""The floor: a bare grpc.aio + uvloop server that answers every unary method of every
service by echoing the request bytes, with no parsing at all. Load tests run the same client
settings against it and quote Ferry's figures as ratios to it.

    python loadtest/echo_server.py [PORT]     # prints {"event": "serving", "address": ...}
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import grpc
import grpc.aio
import uvloop


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


class EchoEverything(grpc.GenericRpcHandler):
    """A handler for any method name: no per-service registration, no (de)serializers."""

    def __init__(self) -> None:
        self._handler = grpc.unary_unary_rpc_method_handler(echo)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return self._handler


async def main(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((EchoEverything(),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(
        json.dumps({"event": "serving", "address": f"127.0.0.1:{bound}", "pid": os.getpid()}),
        flush=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))

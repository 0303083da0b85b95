"""The floor: a bare grpc.aio + uvloop server answering ServingService.GetOnlineFeatures by
echoing the request bytes, with no parsing at all. Ferry's figures are quoted against it.

    python loadtest/echo_server.py PORT
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

METHODS = ("GetOnlineFeatures", "GetModelFeatures", "PushFeatures")


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def main(port: int) -> None:
    server = grpc.aio.server()
    handlers = {m: grpc.unary_unary_rpc_method_handler(echo) for m in METHODS}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("ferry.api.serving.v1.ServingService", handlers),)
    )
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

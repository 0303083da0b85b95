"""The floor profile puts each sampled stack where it belongs: Ferry's own Python, native
code under it, grpc.aio, the event loop, other threads."""

from __future__ import annotations

import sys
from pathlib import Path

# The kit's scripts import each other as top-level modules, as when run from loadtest/.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))
from floor_profile import category

LOOP = ["run (uvloop/__init__.py:92)", "run_forever (loop.c:33192)", "uv_run (core.c:452)"]
GRPC = ["0x7fc3a56e6c3a (grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so)"]
HANDLER = ["guarded (server/interceptor.py:123)", "GetOnlineFeatures (server/serving/x.py:130)"]


def test_stacks_go_to_their_category() -> None:
    main = "thread (1): MainThread"
    assert category(main, [*LOOP, *GRPC, *HANDLER]) == "Ferry's Python"
    hiredis = "pack_command (hiredis/hiredis.cpython-311-x86_64-linux-gnu.so)"
    assert category(main, [*LOOP, *GRPC, *HANDLER, hiredis]) == "native code Ferry calls"
    assert category(main, [*LOOP, *GRPC]) == "grpc.aio (cygrpc)"
    assert category(main, [*LOOP, "epoll_wait (libc.so.6)"]) == "event loop and system calls"
    assert category(main, [*LOOP, "_run (asyncio/events.py:80)"]) == "event loop and system calls"
    assert category(main, [*LOOP, "dumps (json/__init__.py:231)"]) == "other Python"
    assert category("thread (2): Thread-1", [*GRPC]) == "grpc poller and other threads"

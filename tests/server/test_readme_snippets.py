"""The README's Python snippets, run as a user would paste them, against a real server."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from ferry.server import FerryServer

README = Path(__file__).resolve().parents[2] / "README.md"


def python_snippet(after: str) -> str:
    """The first ```python block that follows the line ``after``."""
    text = README.read_text()
    start = text.index(after)
    match = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert match is not None, f"no python block after {after!r}"
    return match.group(1)


async def test_the_tour_snippet_runs(server: FerryServer) -> None:
    code = python_snippet("From Python").replace("127.0.0.1:6570", f"127.0.0.1:{server.port}")
    code = code.replace("timeout_s=0.05", "timeout_s=5")  # a shared CI machine, first call
    scope: dict[str, object] = {}
    # In a thread: the blocking client calls a server on this test's event loop.
    await asyncio.to_thread(exec, compile(code, str(README), "exec"), scope)
    frame = scope["frame"]
    assert list(frame.columns[:2]) == ["user_id", "merchant_id"]  # type: ignore[attr-defined]
    assert str(frame["user_stats:txn_count_7d"].dtype) == "Int64"  # type: ignore[index]

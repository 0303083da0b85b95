"""``ferry delete-rows``: the repair of a row from the far future, through the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from ferry.core import RowCodec, encode_key, load_repo
from ferry.stores import ReadRequest, ViewTable, open_online_store
from tests.e2e.fraud import SAMPLE_REPO

FAR_FUTURE = 253_402_300_799_000_000  # 9999-12-31T23:59:59Z


def ferry(*args: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "ferry.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_row_from_the_future_is_shown_then_deleted_then_written_again(tmp_path: Path) -> None:
    repo = load_repo(SAMPLE_REPO)
    view = repo.view("user_stats")
    codec = RowCodec(view.features)
    table = ViewTable(repo.project, view.name, view.ttl_micros)
    url = f"sqlite:///{tmp_path / 'online.db'}"
    key = encode_key([5])

    async def write(event: int) -> int:
        store = open_online_store(url)
        try:
            row = codec.encode(event, None, [None] * len(view.features))
            return (await store.write(table, [(key, row)])).written
        finally:
            await store.close()

    async def stored() -> bytes | None:
        store = open_online_store(url)
        try:
            return (await store.read([ReadRequest(table, [key])]))[0][0]
        finally:
            await store.close()

    assert asyncio.run(write(FAR_FUTURE)) == 1
    assert asyncio.run(write(1_700_000_000_000_000)) == 0  # the future row wins: stuck
    base = ["delete-rows", str(SAMPLE_REPO), "--online-store", url, "--view", "user_stats"]
    shown = ferry(*base, "--entity", "user_id=5,6")
    assert shown[0] == {"user_id": 5, "found": True, "event_timestamp": "9999-12-31T23:59:59Z"}
    assert shown[1] == {"user_id": 6, "found": False}
    assert shown[2] == {"kind": "total", "view": "user_stats", "deleted": 0, "dry_run": True}
    assert asyncio.run(stored()) is not None
    deleted = ferry(*base, "--entity", "user_id=5", "--yes")
    assert deleted[-1] == {"kind": "total", "view": "user_stats", "deleted": 1, "dry_run": False}
    assert asyncio.run(stored()) is None
    assert asyncio.run(write(1_700_000_000_000_000)) == 1

"""The progress bar counts rows settled (their write acknowledged), not rows read: it shows
read and written rows, the rate, elapsed time and an ETA, and is at 100% only at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path

from ferry.core import load_repo
from ferry.core.timestamps import parse_instant
from ferry.materializer import (
    Counts,
    JobConfig,
    SilentProgress,
    TerminalProgress,
    materialize,
    plan_window,
    progress_for,
    total_rows,
)
from ferry.stores import ViewTable, WriteResult, open_online_store
from ferry.stores.base import OnlineStore
from tests.e2e.fraud import DAY, SAMPLE_REPO, generate


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_and_a_pipe_gets_nothing() -> None:
    assert isinstance(progress_for(io.StringIO(), {}), SilentProgress)
    terminal = FakeTerminal()
    bar = progress_for(terminal, {"users": 200})
    assert isinstance(bar, TerminalProgress)
    bar.update("users", Counts(50, 10, 10))
    bar.update("users", Counts(60, 20, 20))  # within 0.1 s of the last draw: not redrawn
    bar.finish("users", Counts(200, 150, 200))
    lines = terminal.getvalue().split("\r")
    assert len(lines) == 2
    assert "users" in lines[0]
    assert "5%" in lines[0]
    assert "read 50/200 written 10" in lines[0]
    assert "100%" in lines[1]
    assert "read 200/200 written 150" in lines[1]
    assert "ETA" not in lines[1]
    assert lines[1].endswith("\n")


def test_the_bar_is_of_rows_settled_with_rate_elapsed_and_eta() -> None:
    bar = TerminalProgress(io.StringIO(), {"users": 200})
    # Everything read, a quarter settled after 2 s: 25%, and 150 rows to go at 25 rows/s.
    line = bar.line("users", Counts(rows_read=200, rows_written=40, rows_settled=50), 2.0)
    assert "25%" in line
    assert "read 200/200 written 40 (100 rows/s, 2.0 s, ETA 6.0 s)" in line
    assert "ETA -" in bar.line("users", Counts(10, 0, 0), 1.0)  # no rate yet to tell from
    assert "ETA 2 min 00 s" in bar.line("users", Counts(100, 0, 100), 120.0)
    unknown = TerminalProgress(io.StringIO(), {}).line("users", Counts(5, 5, 5), 1.0)
    assert "%" not in unknown
    assert "read 5 written 5" in unknown


class SlowWrites:
    """A real store whose writes take a while, so reading runs ahead of them."""

    def __init__(self, store: OnlineStore) -> None:
        self.store = store

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        await asyncio.sleep(0.05)
        return await self.store.write(table, rows)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


class Recording:
    def __init__(self) -> None:
        self.updates: list[Counts] = []
        self.finished: list[Counts] = []

    def update(self, view: str, counts: Counts) -> None:
        self.updates.append(counts)

    def finish(self, view: str, counts: Counts) -> None:
        self.finished.append(counts)


def test_rows_read_run_ahead_but_settle_only_when_written(tmp_path: Path) -> None:
    end = parse_instant("2026-01-03T12:00:00Z")
    generate(tmp_path / "data", users=3000, merchants=10, transactions=20, end=end, ttl=2 * DAY)
    repo = dataclasses.replace(load_repo(SAMPLE_REPO), offline_root=str(tmp_path / "data"))
    plans = plan_window([repo.view("user_stats")], 0, end)
    (total,) = total_rows(repo, plans).values()
    recording = Recording()

    async def run() -> None:
        store = open_online_store(f"sqlite:///{tmp_path / 'online.db'}")
        try:
            slow = SlowWrites(store)
            config = JobConfig(batch_rows=1000)
            await materialize(repo, slow, plans, config, recording)  # type: ignore[arg-type]
        finally:
            await store.close()

    asyncio.run(run())
    assert all(c.rows_settled <= c.rows_read for c in recording.updates)
    # The honest part: every row was read while writes were still unacknowledged.
    assert any(c.rows_read == total and c.rows_settled < total for c in recording.updates)
    (done,) = recording.finished
    assert done.rows_read == done.rows_settled == total
    assert done.rows_written > 0

"""The embedded default online store: one SQLite file, no server.

All SQLite work runs on one dedicated thread (a connection belongs to its thread), so the
event loop never blocks on disk. WAL mode lets a server read while a materializer writes.
The conditional write is a single UPSERT whose WHERE clause is ``is_newer``: the 16 header
bytes compare as a BLOB exactly as (event_timestamp, created_timestamp) compare.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ferry.core.codec import fingerprint_of, timestamp_prefix
from ferry.core.errors import StoreError, StoreUnavailableError
from ferry.stores.base import (
    ReadRequest,
    ViewTable,
    WriteResult,
    expires_at_ms,
    storage_key,
    storage_keys,
)

_T = TypeVar("_T")
# SQLite allows 32,766 host parameters per statement; stay well below.
_READ_CHUNK = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ferry_rows (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    ts BLOB NOT NULL,
    fingerprint INTEGER NOT NULL,
    expires_at_ms INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ferry_watermarks (
    project TEXT NOT NULL,
    view TEXT NOT NULL,
    micros INTEGER NOT NULL,
    PRIMARY KEY (project, view)
);
"""

_UPSERT = """
INSERT INTO ferry_rows (key, value, ts, fingerprint, expires_at_ms) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    value = excluded.value, ts = excluded.ts, fingerprint = excluded.fingerprint,
    expires_at_ms = excluded.expires_at_ms
WHERE excluded.ts > ferry_rows.ts
   OR (excluded.ts = ferry_rows.ts AND excluded.fingerprint != ferry_rows.fingerprint)
   OR ferry_rows.expires_at_ms <= ?
"""

_RAISE_WATERMARK = """
INSERT INTO ferry_watermarks (project, view, micros) VALUES (?, ?, ?)
ON CONFLICT (project, view) DO UPDATE SET micros = excluded.micros
WHERE excluded.micros > ferry_watermarks.micros
"""


class SqliteOnlineStore:
    """Online store in a local SQLite file (created if missing).

    Args:
        path: The database file.
        reader_threads: Threads (each with its own connection) serving reads, so concurrent
            requests and a running materialization do not queue behind one another. WAL
            lets them read while the single writer thread writes. Default 4.
    """

    natural_batching_reads = 0  # reads are local and cheap

    def __init__(self, path: str | Path, reader_threads: int = 4) -> None:
        self.path = str(path)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferry-sqlite-w")
        self._readers = ThreadPoolExecutor(reader_threads, thread_name_prefix="ferry-sqlite-r")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def _run(self, work: Callable[[sqlite3.Connection], _T], *, write: bool = False) -> _T:
        loop = asyncio.get_running_loop()
        executor = self._writer if write else self._readers
        return await loop.run_in_executor(executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect()
            return work(conn)
        except sqlite3.OperationalError as err:
            raise StoreUnavailableError(f"sqlite store {self.path}: {err}") from err
        except sqlite3.Error as err:
            raise StoreError(f"sqlite store {self.path}: {err}") from err

    def _connect(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        with self._lock:
            self._connections.append(conn)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        keys = storage_keys(requests)

        def work(conn: sqlite3.Connection) -> dict[bytes, bytes]:
            now_ms = time.time_ns() // 1_000_000
            found: dict[bytes, bytes] = {}
            for i in range(0, len(keys), _READ_CHUNK):
                chunk = keys[i : i + _READ_CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, value, expires in conn.execute(
                    f"SELECT key, value, expires_at_ms FROM ferry_rows WHERE key IN ({marks})",
                    chunk,
                ):
                    if expires is None or expires > now_ms:
                        found[key] = value
            return found

        found = await self._run(work) if keys else {}
        return [[found.get(storage_key(r.table, k)) for k in r.keys] for r in requests]

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        if not rows:
            return WriteResult(0, 0)

        def work(conn: sqlite3.Connection) -> int:
            now_ms = time.time_ns() // 1_000_000
            params = [
                (
                    storage_key(table, key),
                    row,
                    timestamp_prefix(row),
                    fingerprint_of(row),
                    expires_at_ms(table, row, now_ms),
                    now_ms,
                )
                for key, row in rows
            ]
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT, params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return conn.total_changes - before

        written = await self._run(work, write=True)
        return WriteResult(written, len(rows) - written)

    async def delete(self, table: ViewTable, keys: Sequence[bytes]) -> int:
        params = [(storage_key(table, key),) for key in keys]

        def work(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("DELETE FROM ferry_rows WHERE key = ?", params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return conn.total_changes - before

        return await self._run(work, write=True)

    async def read_watermarks(self, project: str, views: Sequence[str]) -> dict[str, int]:
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT view, micros FROM ferry_watermarks WHERE project = ?", (project,)
            )
            return {view: micros for view, micros in rows if view in views}

        return await self._run(work)

    async def write_watermark(self, project: str, view: str, micros: int) -> None:
        await self._run(
            lambda conn: conn.execute(_RAISE_WATERMARK, (project, view, micros)), write=True
        )

    async def initialize(self) -> str:
        await self.ping()  # connecting creates the schema
        return f"SQLite file {self.path}: tables ready"

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        # Waits for work in flight, off the event loop.
        self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

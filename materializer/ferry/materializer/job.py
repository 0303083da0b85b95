"""The materialization job: offline Parquet -> as-of at the window's end -> online store.

Per view: read the source's row groups that may hold rows of the window (statistics
pushdown, column projection), in bounded batches; gather at least ``batch_rows`` rows; hand
them to the one ingest path (``ferry.core.ingest``: drop rows with a null key or event time,
keep each key's as-of row at ``end``, encode); and write through the store's timestamp-conditional
writer with at most ``max_writes_in_flight`` batches outstanding, so reading and encoding
overlap the store's work and memory stays bounded whatever the input size.

The batches' rows are then held by key (``ferry.materializer.newest``), the newest per key,
and written when the view is read: each key is written once where memory allows. A view
with more keys than ``max_held_rows`` has its held rows written once the bound is passed,
and its later batches written as they come; a key's rows in several writes are reconciled
by the conditional write, which keeps the greatest (event, created) timestamps. (Writing
only the rows held longest, to keep holding, measured 1.2x the job's time at 1M users for
16% fewer writes: each held row costs Python work, and a partly full hold saves little.)
For the same reason a failed or killed run is simply run again; the watermark moves to
``end`` only after every write of the view has been acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import pyarrow as pa
import pyarrow.dataset as ds

from ferry.core.codec import RowCodec
from ferry.core.errors import SourceError
from ferry.core.ingest import ingest_rows
from ferry.core.repo import FeatureRepo, FeatureView
from ferry.materializer.newest import NewestRows
from ferry.materializer.plan import ViewPlan
from ferry.materializer.progress import Counts, Progress, SilentProgress
from ferry.materializer.shards import Shard, raise_watermark
from ferry.stores.base import OnlineStore, ViewTable, WriteResult, check_distinct_prefixes
from ferry.stores.offline import count_rows, open_checked_source, open_source, row_groups, scan
from ferry.stores.schemas import record_schema


@dataclass(frozen=True)
class JobConfig:
    """Tuning of a materialization.

    Attributes:
        batch_rows: Rows reduced, encoded and written together. Default 16,384: measured
            fastest into Redis and SQLite among 8k-64k (fraud data, 1.8M rows: 9.1 s against
            10.5 s at 64k), with a peak RSS of ~250 MB against ~400 MB at 64k.
        max_writes_in_flight: Batches written concurrently. Default 2: one in the store while
            the next is encoded.
        max_held_rows: Most encoded rows of a view held by key before they are written, so
            that a key whose rows fall into several batches is written once. Default
            262,144 (about 80 MB of rows of the fraud data set); a view with more keys is
            written batch by batch past that; 0 writes every batch as it is encoded.
        shard: Materialize only this shard of each view's row groups
            (``ferry.materializer.shards``); None does all.
    """

    batch_rows: int = 16_384
    max_writes_in_flight: int = 2
    max_held_rows: int = 262_144
    shard: Shard | None = None


@dataclass
class ViewReport:
    """What a view's materialization did.

    rows_read: rows of the row groups read (those whose statistics may hold the window).
    rows_skipped_null_timestamp: rows read whose event time is null.
    rows_outside_window: rows read whose event time is outside the window or the TTL at end;
        rows_after_end counts those later than end (from the future, when end is now).
    rows_in_window: the rest, which add up as rows_skipped_null_key + rows_superseded
        (not their key's as-of row within their batch, or older than a row of their key in
        another batch held with it) + rows_written + rows_skipped_not_newer (the store held
        a row as new or newer).
    """

    view: str
    start: int | None
    end: int
    rows_read: int = 0
    rows_in_window: int = 0
    rows_outside_window: int = 0
    rows_after_end: int = 0
    rows_superseded: int = 0
    rows_written: int = 0
    rows_skipped_not_newer: int = 0
    rows_skipped_null_key: int = 0
    rows_skipped_null_timestamp: int = 0
    seconds: float = 0.0
    batches: int = field(default=0, repr=False)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def add(self, result: WriteResult) -> None:
        self.rows_written += result.written
        self.rows_skipped_not_newer += result.skipped_not_newer


REPORT_COUNTS = tuple(f.name for f in fields(ViewReport) if f.name.startswith("rows_"))
"""The row counts of a ``ViewReport``, in declaration order (JSON lines, pushed metrics)."""


async def materialize(
    repo: FeatureRepo,
    store: OnlineStore,
    plans: Sequence[ViewPlan],
    config: JobConfig = JobConfig(),
    progress: Progress | None = None,
) -> list[ViewReport]:
    """Materialize every planned view, one after the other, and raise their watermarks.

    Every source is checked against its declaration before anything is written.

    Raises:
        SourceError: a source is missing, unreadable or does not match the repo.
        StoreError: the store failed; watermarks of unfinished views are not moved.
    """
    check_distinct_prefixes(repo.project, repo.views)
    # Every source is opened and checked once, up front, and the datasets reused to scan.
    datasets = open_sources(repo, plans)
    reports = []
    for plan in plans:
        report = await _materialize_view(
            repo, store, plan, datasets[plan.view.name], config, progress or SilentProgress()
        )
        reports.append(report)
    return reports


def open_sources(repo: FeatureRepo, plans: Sequence[ViewPlan]) -> dict[str, ds.Dataset]:
    """Every planned view's source, opened and checked against its declaration (footers
    only: cheap), by view name.

    Raises:
        SourceError: naming every source that is missing, unreadable or does not match.
    """
    datasets: dict[str, ds.Dataset] = {}
    problems = []
    for plan in plans:
        try:
            datasets[plan.view.name] = open_checked_source(repo, plan.view)
        except SourceError as err:
            problems.append(str(err))
    if problems:
        raise SourceError("\n".join(problems))
    return datasets


async def _materialize_view(
    repo: FeatureRepo,
    store: OnlineStore,
    plan: ViewPlan,
    dataset: ds.Dataset,
    config: JobConfig,
    progress: Progress,
) -> ViewReport:
    view, window = plan.view, plan.window
    started = time.perf_counter()
    report = ViewReport(view.name, window.start, window.end)
    writer = _Writer(
        store,
        ViewTable(repo.project, view.name, view.ttl_micros),
        report,
        config,
        lambda counts: progress.update(view.name, counts),
    )
    codec = RowCodec(view.features)
    # Before any row: a reader of another schema of the view learns this one from the store.
    await record_schema(store, writer.table, codec)
    pieces = row_groups(dataset, view, window)
    if config.shard is not None:
        pieces = config.shard.take(pieces)
    pending: list[pa.Table] = []
    pending_rows = 0
    pending_read = 0  # rows read since the last encoding
    holding = _Holding(writer, report, config)
    try:
        for read, after_end, in_window in scan(pieces, view, window, config.batch_rows):
            report.rows_read += read
            report.rows_after_end += after_end
            report.rows_outside_window += read - in_window.num_rows
            pending.append(in_window)
            pending_rows += in_window.num_rows
            pending_read += read
            if pending_rows >= config.batch_rows:
                rows = _encode(pa.concat_tables(pending), view, codec, window.end, report)
                await holding.add(rows, pending_read)
                pending, pending_rows, pending_read = [], 0, 0
            progress.update(view.name, writer.counts())
        if pending_rows:
            rows = _encode(pa.concat_tables(pending), view, codec, window.end, report)
            await holding.add(rows, pending_read)
            pending_read = 0
        await holding.flush(pending_read)
        await writer.drain()
    except BaseException:
        await writer.cancel()
        raise
    report.rows_in_window = (
        report.rows_read - report.rows_outside_window - report.rows_skipped_null_timestamp
    )
    await raise_watermark(store, repo.project, view.name, window.end, config.shard)
    report.seconds = time.perf_counter() - started
    progress.finish(view.name, writer.counts())
    return report


def total_rows(
    repo: FeatureRepo, plans: Sequence[ViewPlan], shard: Shard | None = None
) -> dict[str, int]:
    """Rows each plan will read (its shard's part), from Parquet metadata: for progress bars."""
    totals = {}
    for plan in plans:
        pieces = row_groups(open_source(repo, plan.view), plan.view, plan.window)
        totals[plan.view.name] = count_rows(shard.take(pieces) if shard else pieces)
    return totals


def _encode(
    table: pa.Table, view: FeatureView, codec: RowCodec, end: int, report: ViewReport
) -> list[tuple[bytes, bytes]]:
    batch = ingest_rows(table, view, codec, as_of_micros=end, use_ttl=True)
    report.rows_skipped_null_timestamp += batch.null_timestamp
    report.rows_skipped_null_key += batch.null_key
    report.rows_superseded += batch.superseded
    return batch.rows


class _Holding:
    """A view's encoded rows on their way to the writer: held by key, the newest per key,
    while they fit in ``max_held_rows``; past that (or with 0) written as they come."""

    def __init__(self, writer: _Writer, report: ViewReport, config: JobConfig) -> None:
        self.writer, self.report = writer, report
        self.limit, self.batch_rows = config.max_held_rows, config.batch_rows
        self.held = NewestRows()
        self.held_read = 0  # rows read whose rows are held: they settle with the last write
        self.holding = self.limit > 0

    async def add(self, rows: list[tuple[bytes, bytes]], rows_read: int) -> None:
        """Hold or write ``rows``, which came of ``rows_read`` source rows."""
        if not self.holding:
            await self.writer.submit(rows, rows_read)
            return
        self.report.rows_superseded += self.held.add(rows)
        self.held_read += rows_read
        if len(self.held) > self.limit:  # the view's keys do not fit
            self.holding = False
            await self.flush()

    async def flush(self, rows_read: int = 0) -> None:
        """Write every held row, ``batch_rows`` per store call (and settle ``rows_read``
        more source rows with them)."""
        rows = self.held.take()
        settling, self.held_read = self.held_read + rows_read, 0
        starts = range(0, len(rows), self.batch_rows) or range(1)
        for start in starts:
            last = start == starts[-1]
            await self.writer.submit(rows[start : start + self.batch_rows], settling if last else 0)


class _Writer:
    """Keeps at most ``max_writes_in_flight`` batch writes outstanding; the first failed
    write's error is raised at the next submit or drain."""

    def __init__(
        self,
        store: OnlineStore,
        table: ViewTable,
        report: ViewReport,
        config: JobConfig,
        on_write: Callable[[Counts], None],
    ) -> None:
        self.store, self.table, self.report = store, table, report
        self.limit = config.max_writes_in_flight
        self.on_write = on_write
        self.tasks: set[asyncio.Task[WriteResult]] = set()
        self.rows_read_of: dict[asyncio.Task[WriteResult], int] = {}
        self.rows_settled = 0

    def counts(self) -> Counts:
        """Rows read, written (acknowledged) and settled so far."""
        return Counts(self.report.rows_read, self.report.rows_written, self.rows_settled)

    async def submit(self, rows: list[tuple[bytes, bytes]], rows_read: int) -> None:
        """Write ``rows``, which came of ``rows_read`` source rows (settled with them)."""
        if not rows:  # every row outside the window or with a null key or event time
            self.rows_settled += rows_read
            return
        while len(self.tasks) >= self.limit:
            await self._wait()
        self.report.batches += 1
        task = asyncio.create_task(self.store.write(self.table, rows))
        self.tasks.add(task)
        self.rows_read_of[task] = rows_read

    async def drain(self) -> None:
        while self.tasks:
            await self._wait()

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        self.rows_read_of.clear()

    async def _wait(self) -> None:
        done, self.tasks = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        # Every finished write is looked at, so that a second failure (a store stall fails
        # all writes in flight at once) is not left as "Task exception was never retrieved".
        failures: list[BaseException] = []
        for task in done:
            rows_read = self.rows_read_of.pop(task)
            failure = task.exception()
            if failure is None:
                self.report.add(task.result())
                self.rows_settled += rows_read
            else:
                failures.append(failure)
        if failures:
            raise failures[0]
        self.on_write(self.counts())

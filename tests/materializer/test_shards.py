"""Shards: N=4 shards of one window, in a random order, one of them failing part-way and
run again, store exactly what one run stores and what the as-of oracle says; each shard
reads about a quarter of the rows; the view's watermark moves only when the last shard is
done."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from ferry.core import FeatureRepo, load_repo
from ferry.core.errors import StoreUnavailableError
from ferry.core.timestamps import parse_instant
from ferry.materializer import JobConfig, Shard, ViewReport, materialize, plan_window
from ferry.stores import ReadRequest, ViewTable, WriteResult, open_online_store
from ferry.stores.base import OnlineStore
from tests.e2e.fraud import ROOT, SAMPLE_REPO, all_keys, check_stored, oracle

END = parse_instant("2026-01-03T12:00:00Z")


class FailsAfterOneWrite:
    """A real store that fails its second write, as a shard killed part-way would stop."""

    def __init__(self, store: OnlineStore) -> None:
        self.store = store
        self.writes = 0

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        self.writes += 1
        if self.writes > 1:
            raise StoreUnavailableError("the shard's process was killed")
        return await self.store.write(table, rows)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> FeatureRepo:
    """The fraud data in many small row groups, so that shards have something to split."""
    data = tmp_path_factory.mktemp("sharded") / "data"
    sizes = ["--users", "3000", "--merchants", "300", "--transactions", "3000"]
    script = [sys.executable, str(ROOT / "datasets" / "fraud.py"), str(data)]
    subprocess.run(
        [*script, *sizes, "--row-group", "400"],
        check=True,
        capture_output=True,
    )
    return dataclasses.replace(load_repo(SAMPLE_REPO), offline_root=str(data))


async def run(repo: FeatureRepo, store: OnlineStore, shard: Shard | None) -> list[ViewReport]:
    plans = plan_window(list(repo.views.values()), 0, END)
    config = JobConfig(batch_rows=500, shard=shard)
    return await materialize(repo, store, plans, config)


async def stored_rows(
    store: OnlineStore, repo: FeatureRepo
) -> dict[str, dict[bytes, bytes | None]]:
    out = {}
    for view in repo.views.values():
        keys = all_keys(repo, view)
        table = ViewTable(repo.project, view.name, view.ttl_micros)
        (values,) = await store.read([ReadRequest(table, keys)])
        out[view.name] = dict(zip(keys, values, strict=True))
    return out


def test_four_shards_in_any_order_with_a_retry_equal_one_run(
    repo: FeatureRepo, tmp_path: Path
) -> None:
    async def scenario() -> None:
        single = open_online_store(f"sqlite:///{tmp_path / 'single.db'}")
        sharded = open_online_store(f"sqlite:///{tmp_path / 'sharded.db'}")
        try:
            whole = await run(repo, single, None)
            order = [0, 1, 2, 3]
            random.Random(7).shuffle(order)
            failing = order[1]
            reads: dict[int, dict[str, int]] = {}
            for position, index in enumerate(order):
                shard = Shard(index, 4)
                if index == failing:
                    with pytest.raises(StoreUnavailableError):
                        await run(repo, FailsAfterOneWrite(sharded), shard)  # type: ignore[arg-type]
                if position < 3:
                    marks = await sharded.read_watermarks(repo.project, list(repo.views))
                    assert marks == {}, "a view's watermark moved before its last shard"
                reports = await run(repo, sharded, shard)
                reads[index] = {r.view: r.rows_read for r in reports}
            marks = await sharded.read_watermarks(repo.project, list(repo.views))
            assert marks == dict.fromkeys(repo.views, END)

            single_rows = await stored_rows(single, repo)
            sharded_rows = await stored_rows(sharded, repo)
            for view in repo.views.values():
                assert sharded_rows[view.name] == single_rows[view.name], view.name
                check_stored(view, oracle(repo, view, END), sharded_rows[view.name])
            for report in whole:
                per_shard = [reads[i][report.view] for i in range(4)]
                assert sum(per_shard) == report.rows_read, report.view
                if report.rows_read >= 4_000:  # ten row groups of 400 or more to split
                    # Each reads about a quarter (whole row groups: not exactly).
                    assert max(per_shard) < report.rows_read * 0.4, (report.view, per_shard)
                    assert min(per_shard) > report.rows_read * 0.1, (report.view, per_shard)
        finally:
            await single.close()
            await sharded.close()

    asyncio.run(scenario())


def test_shard_arguments_are_checked(tmp_path: Path) -> None:
    ferry = [sys.executable, "-m", "ferry.cli.main", "materialize", str(SAMPLE_REPO)]
    window = ["--start", "2026-01-01", "--end", "2026-01-03"]
    for shard, end, message in (
        ("4/4", None, "the index must be 0 to N-1"),
        ("5/4", None, "the index must be 0 to N-1"),
        ("0/0", None, "N must be at least 1"),
        ("x", None, "expected I/N"),
        ("job-index/4", None, "needs $JOB_COMPLETION_INDEX"),
        ("0/4", "now", "--shard needs an explicit --end"),
    ):
        args = [*window[:2], "--end", end] if end else window
        done = subprocess.run(
            [*ferry, *args, "--shard", shard],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "JOB_COMPLETION_INDEX"},
        )
        assert done.returncode == 2, (shard, done.stderr)
        assert message in done.stderr, (shard, done.stderr)

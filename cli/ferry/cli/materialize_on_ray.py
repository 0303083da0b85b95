"""``ferry materialize ... --ray [ADDRESS] --shards N``: plan once here, run the N shards as
Ray tasks (``ferry.materializer.on_ray``), print what each did and the total.

Output, one JSON line each: per shard and view the usual view line with ``shard``; per shard
a ``shard`` line (seconds, peak RSS, bytes read, attempts, node); then the total, whose
``seconds`` is the run's wall time. Progress (a shard done, a shard retried) goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from ferry.cli import pushgateway
from ferry.cli.compose import open_store
from ferry.cli.materialize import Planner, total_line, view_line
from ferry.cli.settings import online_store_url
from ferry.core.repo import FeatureRepo
from ferry.materializer import open_sources
from ferry.materializer.on_ray import ShardedJob, run_on_ray


def run(args: argparse.Namespace, repo: FeatureRepo, planner: Planner) -> int:
    url = online_store_url(args, repo)
    marks = asyncio.run(_watermarks(url, repo))
    plans = planner(marks)
    open_sources(repo, plans)  # a bad source fails here, not N shards x their attempts
    job = ShardedJob(repo, url, plans, args.batch_rows, args.max_held_rows)
    started = time.monotonic()
    try:
        outcomes = run_on_ray(job, args.shards, args.ray or None, args.shard_retries, _say)
    except BaseException:
        if args.pushgateway:
            pushgateway.push_failure(args.pushgateway, repo.project)
        raise
    wall = time.monotonic() - started
    reports = []
    for outcome in outcomes:
        for report in outcome.reports:
            print(json.dumps({**view_line(report), "shard": str(outcome.shard)}))
            reports.append(report)
        shard_line = {
            "kind": "shard",
            "shard": str(outcome.shard),
            "seconds": round(outcome.seconds, 3),
            "peak_rss_bytes": outcome.peak_rss_bytes,
            "bytes_read": outcome.bytes_read,
            "attempts": outcome.attempts,
            "node": outcome.node,
        }
        print(json.dumps(shard_line))
    total = total_line(reports)
    total.update(views=len({r.view for r in reports}), shards=len(outcomes), seconds=round(wall, 3))
    total["rows_per_second"] = round(sum(r.rows_read for r in reports) / wall) if wall else 0
    print(json.dumps(total))
    if args.pushgateway:
        pushgateway.push_success(args.pushgateway, repo.project, reports)
    return 0


async def _watermarks(url: str, repo: FeatureRepo) -> dict[str, int]:
    """The views' watermarks, read once by the driver so every shard plans the same."""
    store = open_store(url)
    try:
        return await store.read_watermarks(repo.project, list(repo.views))
    finally:
        await store.close()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

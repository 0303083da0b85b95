"""``ferry materialize`` and ``ferry materialize-incremental``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence

from ferry.cli import pushgateway
from ferry.cli.arguments import shard_of
from ferry.cli.compose import open_store
from ferry.cli.settings import load, online_store_url
from ferry.core.errors import InvalidValueError
from ferry.core.repo import FeatureRepo
from ferry.core.timestamps import format_micros, now_micros, parse_instant
from ferry.materializer import (
    REPORT_COUNTS,
    JobConfig,
    Shard,
    ViewPlan,
    ViewReport,
    materialize,
    plan_incremental,
    plan_window,
    progress_for,
    select_views,
    total_rows,
)

Planner = Callable[[dict[str, int]], list[ViewPlan]]
"""Turns the stored watermarks into the plans to run."""


MAX_END_AHEAD_S = 300
"""How far past the clock ``--end`` may lie (clocks of job and data differ a little)."""


def run_window(args: argparse.Namespace) -> int:
    repo = load(args)
    views = select_views(repo, _names(args.views))
    plans = plan_window(views, parse_instant(args.start), _end(args.end))
    return _dispatch(args, repo, lambda _: plans)


def run_incremental(args: argparse.Namespace) -> int:
    repo = load(args)
    views = select_views(repo, _names(args.views))
    end = _end(args.end)
    return _dispatch(args, repo, lambda marks: plan_incremental(views, marks, end))


def _end(text: str) -> int:
    """``--end``, refused when it lies ahead of the clock: rows stamped in the future would
    win every later write, and watermarks at that end would make later incremental runs
    skip the rows that arrive meanwhile.

    Raises:
        InvalidValueError: not an instant, or later than now plus ``MAX_END_AHEAD_S``.
    """
    end = parse_instant(text)
    if end > now_micros() + MAX_END_AHEAD_S * 1_000_000:
        raise InvalidValueError(
            f"--end {format_micros(end)} is in the future (more than {MAX_END_AHEAD_S} s "
            "ahead of this machine's clock): rows stamped later than now would be stored and "
            "win every later write, and watermarks there would skip rows that arrive "
            "meanwhile; use --end now or an instant in the past"
        )
    return end


def _dispatch(args: argparse.Namespace, repo: FeatureRepo, planner: Planner) -> int:
    if args.ray is not None:
        from ferry.cli import materialize_on_ray

        return materialize_on_ray.run(args, repo, planner)
    return asyncio.run(_run(args, repo, planner))


async def _run(args: argparse.Namespace, repo: FeatureRepo, planner: Planner) -> int:
    shard = Shard(*shard_of(args.shard)) if args.shard else None
    store = open_store(online_store_url(args, repo))
    try:
        marks = await store.read_watermarks(repo.project, list(repo.views))
        plans = planner(marks)
        totals = total_rows(repo, plans, shard) if sys.stderr.isatty() else {}
        config = JobConfig(
            batch_rows=args.batch_rows, max_held_rows=args.max_held_rows, shard=shard
        )
        reports = await materialize(repo, store, plans, config, progress_for(sys.stderr, totals))
    except BaseException:
        if args.pushgateway:
            pushgateway.push_failure(args.pushgateway, repo.project)
        raise
    finally:
        await store.close()
    for report in reports:
        line = view_line(report)
        if shard is not None:
            line["shard"] = str(shard)
        print(json.dumps(line))
    print(json.dumps(total_line(reports)))
    if args.pushgateway:
        pushgateway.push_success(args.pushgateway, repo.project, reports)
    return 0


def _names(text: str | None) -> Sequence[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def view_line(report: ViewReport) -> dict[str, object]:
    line: dict[str, object] = {
        "kind": "view",
        "view": report.view,
        "start": None if report.start is None else format_micros(report.start),
        "end": format_micros(report.end),
    }
    line.update({name: getattr(report, name) for name in REPORT_COUNTS})
    line["seconds"] = round(report.seconds, 3)
    line["rows_per_second"] = round(report.rows_per_second)
    return line


def total_line(reports: Sequence[ViewReport]) -> dict[str, object]:
    seconds = sum(r.seconds for r in reports)
    rows_read = sum(r.rows_read for r in reports)
    line: dict[str, object] = {"kind": "total", "views": len(reports)}
    line.update({name: sum(getattr(r, name) for r in reports) for name in REPORT_COUNTS})
    line["seconds"] = round(seconds, 3)
    line["rows_per_second"] = round(rows_read / seconds) if seconds else 0
    return line

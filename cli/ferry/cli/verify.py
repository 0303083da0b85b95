"""``ferry verify``: the training-serving skew check against a running server."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from ferry.cli.compose import open_store
from ferry.cli.output import json_default, strict
from ferry.cli.settings import client_of, load, online_store_url
from ferry.client.skew_check import sample_keys, verify_view
from ferry.core.errors import FerryError
from ferry.core.repo import FeatureRepo
from ferry.core.timestamps import format_micros, parse_instant
from ferry.materializer import select_views


def run(args: argparse.Namespace) -> int:
    repo = load(args)
    views = select_views(repo, [v for v in (args.views or "").split(",") if v])
    times = _times(args, repo, [v.name for v in views])
    total, found = 0, 0
    with client_of(args, 30) as client:
        for view in views:
            keys = sample_keys(repo, view, args.sample, args.seed)
            compared, mismatches = verify_view(client, repo, view, keys, times[view.name])
            total += compared
            found += len(mismatches)
            for m in mismatches:
                print(
                    json.dumps(
                        strict(
                            {
                                "kind": "mismatch",
                                "view": m.view,
                                "feature": m.feature,
                                "entity": m.entity,
                                "served": m.served,
                                "expected": m.expected,
                            }
                        ),
                        default=json_default,
                        allow_nan=False,
                    )
                )
    print(
        json.dumps(
            {
                "kind": "summary",
                "views": len(views),
                "values_compared": total,
                "mismatches": found,
                "at": {name: format_micros(at) for name, at in times.items()},
            }
        )
    )
    if found:
        print(
            f"ferry verify: {found} of {total} served values differ from the offline store",
            file=sys.stderr,
        )
    return 1 if found else 0


def _times(args: argparse.Namespace, repo: FeatureRepo, views: list[str]) -> dict[str, int]:
    if args.at:
        at = parse_instant(args.at)
        return dict.fromkeys(views, at)

    async def read() -> dict[str, int]:
        store = open_store(online_store_url(args, repo))
        try:
            return await store.read_watermarks(repo.project, views)
        finally:
            await store.close()

    marks = asyncio.run(read())
    missing = [v for v in views if v not in marks]
    if missing:
        raise FerryError(f"no watermark for {', '.join(missing)}: materialize first, or pass --at")
    return marks

"""``ferry delete-rows``: remove stored rows of some entities of one view (a repair).

A row whose timestamps lie far in the future wins every later conditional write, so neither
materializing nor pushing can replace it. This command removes such rows: without
``--yes`` it only shows what is stored; with it, it deletes, and the next materialization
or push writes the entity's row again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ferry.cli.compose import open_store
from ferry.cli.lookup import entity_keys
from ferry.cli.settings import load, online_store_url
from ferry.core.codec import event_timestamp_of
from ferry.core.keys import encode_key
from ferry.core.timestamps import describe_micros
from ferry.stores.base import ReadRequest, ViewTable
from ferry.stores.legacy_keys import LegacyKeysStore


def run(args: argparse.Namespace) -> int:
    repo = load(args)
    view = repo.view(args.view)
    keys = entity_keys(view, args.entity)
    encoded = [encode_key(k) for k in keys]
    table = ViewTable(repo.project, view.name, view.ttl_micros)
    # Both key layouts: a row left under the old one would be served again by a server
    # reading it (--read-legacy-keys) once the new one is gone.
    store = LegacyKeysStore(open_store(online_store_url(args, repo)))

    async def work() -> tuple[list[bytes | None], int]:
        try:
            (stored,) = await store.read([ReadRequest(table, encoded)])
            deleted = await store.delete(table, encoded) if args.yes else 0
            return stored, deleted
        finally:
            await store.close()

    stored, deleted = asyncio.run(work())
    for key, row in zip(keys, stored, strict=True):
        line: dict[str, Any] = dict(zip(view.join_key_names, key, strict=True))
        line["found"] = row is not None
        if row is not None:
            line["event_timestamp"] = describe_micros(event_timestamp_of(row))
        print(json.dumps(line, ensure_ascii=False))
    print(
        json.dumps(
            {"kind": "total", "view": view.name, "deleted": deleted, "dry_run": not args.yes}
        )
    )
    return 0

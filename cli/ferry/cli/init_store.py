"""``ferry init-store``: create what the online store needs before first use.

For DynamoDB the table (on-demand billing, TTL on attribute ``exp``); for SQLite the file's
tables; Redis needs nothing. Idempotent: an existing table is checked, not replaced.
"""

from __future__ import annotations

import argparse
import asyncio

from ferry.cli.compose import open_store
from ferry.cli.settings import load, online_store_url


def run(args: argparse.Namespace) -> int:
    store = open_store(online_store_url(args, load(args)))

    async def initialize() -> str:
        try:
            return await store.initialize()
        finally:
            await store.close()

    print(asyncio.run(initialize()))
    return 0

"""``ferry init-store``: create what the online store needs before first use.

For DynamoDB the table (on-demand billing, TTL on attribute ``exp``); for SQLite the file's
tables; Redis needs nothing. Idempotent: an existing table is checked, not replaced.
"""

from __future__ import annotations

import argparse
import asyncio

from ferry.cli.compose import open_store
from ferry.cli.settings import add_repo_arguments, load, online_store_url


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "init-store",
        help="create the online store's table (DynamoDB) if it does not exist; idempotent",
    )
    add_repo_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    store = open_store(online_store_url(args, load(args)))

    async def initialize() -> str:
        try:
            return await store.initialize()
        finally:
            await store.close()

    print(asyncio.run(initialize()))
    return 0

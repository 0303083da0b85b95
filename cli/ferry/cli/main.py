"""The ``ferry`` command: one CLI, one subcommand per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ferry.cli import (
    delete_rows,
    get,
    init_store,
    lookup,
    materialize,
    serve,
    training_frame,
    validate,
    verify,
)
from ferry.core.errors import FerryError


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ferry", description="Ferry: define features once, serve them as trained."
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate.register(commands)
    init_store.register(commands)
    materialize.register(commands)
    lookup.register(commands)
    delete_rows.register(commands)
    serve.register(commands)
    get.register(commands)
    training_frame.register(commands)
    verify.register(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except FerryError as err:
        print(f"ferry {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ferry {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

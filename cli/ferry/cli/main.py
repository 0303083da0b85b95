"""The ``ferry`` command: one CLI, one subcommand per job.

The arguments are parsed and checked by ``ferry.cli.arguments`` (standard library only);
only then is the module that runs the subcommand imported, so help and usage errors are
instant and each subcommand loads only what it uses.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from ferry.cli import arguments


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments.parse(list(argv) if argv is not None else None)
    run = _runner(args.run)
    # Named here, not imported at the top: importing ferry.core loads pyarrow and numpy,
    # which `ferry --help` must not wait for. The runner has loaded it by now.
    errors = importlib.import_module("ferry.core.errors")
    try:
        return int(run(args))
    except errors.FerryError as err:
        print(f"ferry {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ferry {args.command}: interrupted", file=sys.stderr)
        return 130


def _runner(name: str) -> Callable[[argparse.Namespace], int]:
    """``"module:function"`` -> the function, importing its module now."""
    module, _, function = name.partition(":")
    run: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), function)
    return run


if __name__ == "__main__":
    sys.exit(main())

"""``ferry validate``: check a repo file and its sources, reporting every problem."""

from __future__ import annotations

import argparse
import sys

from ferry.cli.settings import add_repo_arguments, load
from ferry.core.errors import RepoError
from ferry.stores.offline import check_source


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "validate",
        help="check a feature repo file and that its sources match it",
        description="Report every problem of a feature repo file, then check that each "
        "view's source exists and has the declared columns and types. Exit 0 only when all "
        "is well.",
    )
    add_repo_arguments(parser, online=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        repo = load(args)
    except RepoError as err:
        for repo_problem in err.problems:
            print(repo_problem, file=sys.stderr)
        print(f"{len(err.problems)} problem(s); sources not checked", file=sys.stderr)
        return 1
    problems = [p for view in repo.views.values() for p in check_source(repo, view)]
    for problem in problems:
        print(f"{args.repo_file}: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in the sources", file=sys.stderr)
        return 1
    print(
        f"{args.repo_file}: ok: project {repo.project!r}, {len(repo.entities)} entities, "
        f"{len(repo.views)} feature views, {len(repo.services)} feature services; "
        "every source matches"
    )
    return 0

"""``ferry validate``: check a repo file and its sources, reporting every problem."""

from __future__ import annotations

import argparse
import sys

from ferry.cli.settings import load
from ferry.core.errors import RepoError
from ferry.stores.offline import check_source


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

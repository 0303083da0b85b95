"""Another git revision beside the work tree, for benchmarks that compare the two in one run
(compare_revisions.py for serving, compare_materialize.py for the job)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLICES = ("core", "stores", "materializer", "wire", "server", "client", "cli", "protos")


@contextmanager
def worktree(revision: str, where: Path) -> Iterator[Path]:
    """``revision`` checked out at ``where`` (a detached git worktree) while the block runs,
    with its compiled per-row loops built where it has them (as its setup would), so the
    two sides of a comparison differ by their code only."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), revision],
        check=True,
        capture_output=True,
    )
    build = where / "scripts" / "build_speedups.py"
    if build.exists():
        subprocess.run([sys.executable, str(build)], check=True)
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
            check=False,
            capture_output=True,
        )


def environment_of(tree: Path) -> dict[str, str]:
    """The environment that runs ``tree``'s code: its slices first on PYTHONPATH, so the
    namespace package ``ferry`` resolves every subpackage from that tree, ahead of the
    editable install's paths."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(str(tree / s) for s in SLICES)}

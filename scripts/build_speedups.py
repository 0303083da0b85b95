"""Build ``ferry.core._speedups`` (core/ferry/core/_speedups.c) with the C compiler and the
headers of the Python that runs this: next to its source when run (scripts/setup.sh, for
the editable install), or where the wheel's build hook asks (hatch_build.py).

Where there is no compiler or no Python headers it says so and builds nothing: Ferry then
runs the same loops in Python (``ferry.core.speedups``). A compiler that fails is an error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "core" / "ferry" / "core" / "_speedups.c"
MODULE = "_speedups" + str(sysconfig.get_config_var("EXT_SUFFIX"))
"""The extension's file name for this Python (``_speedups.cpython-311-x86_64-linux-gnu.so``
on Linux)."""


def build(target: Path) -> bool:
    """Compile the extension to ``target`` (unless it is newer than the source already);
    False where this machine cannot.

    Raises:
        subprocess.CalledProcessError: the compiler failed.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    if compiler is None or not (Path(include) / "Python.h").exists():
        missing = "a C compiler" if compiler is None else f"Python's headers ({include})"
        print(f"ferry: no {missing}: serving runs its per-row loops in Python", file=sys.stderr)
        return False
    if target.exists() and target.stat().st_mtime >= SOURCE.stat().st_mtime:
        return True
    command = [compiler, "-O2", "-shared", "-fPIC", "-Wall", "-Werror", f"-I{include}"]
    subprocess.run([*command, str(SOURCE), "-o", str(target)], check=True)
    return True


if __name__ == "__main__":
    build(SOURCE.with_name(MODULE))

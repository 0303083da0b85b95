"""Build ``ferry.core._speedups`` (core/ferry/core/_speedups.c) next to its source, with
the C compiler and the headers of the Python that runs this. Run by scripts/setup.sh.

Where there is no compiler or no Python headers it says so and exits 0: Ferry then runs
the same loops in Python (``ferry.core.speedups``). A compiler that fails is an error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "core" / "ferry" / "core" / "_speedups.c"


def main() -> int:
    compiler = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    if compiler is None or not (Path(include) / "Python.h").exists():
        missing = "a C compiler" if compiler is None else f"Python's headers ({include})"
        print(f"ferry: no {missing}: serving runs its per-row loops in Python", file=sys.stderr)
        return 0
    target = SOURCE.with_name("_speedups" + sysconfig.get_config_var("EXT_SUFFIX"))
    if target.exists() and target.stat().st_mtime >= SOURCE.stat().st_mtime:
        return 0
    command = [compiler, "-O2", "-shared", "-fPIC", "-Wall", "-Werror", f"-I{include}"]
    command += [str(SOURCE), "-o", str(target)]
    subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Sets up a fresh machine: uv, a Python 3.11 virtualenv in .venv, and Ferry installed in it
# (editable). `bash scripts/setup.sh dev` adds the test and lint tools; any other argument
# names one extra of pyproject.toml (`loadtest`, `registry`).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ -n "${1:-}" ] && extras="[$1]"
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check uv
fi
# Name the interpreter itself: uv would otherwise try to download a Python it cannot find.
interpreter=$("$PYTHON" -c 'import sys; print(sys.executable)')
[ -x .venv/bin/python ] || "$PYTHON" -m uv venv --quiet --python "$interpreter" .venv
"$PYTHON" -m uv pip install --quiet --python .venv/bin/python -e ".$extras"
# The serving path's per-row loops, compiled (ferry.core._speedups) where a C compiler and
# Python's headers are; without them Ferry runs the same loops in Python.
.venv/bin/python scripts/build_speedups.py
# Bytecode for everything installed and for Ferry's own sources, once, here. Where
# PYTHONDONTWRITEBYTECODE is set (as on our CI machines) Python never caches it, so every
# process would compile every module it imports again: 1.41-1.51 s to import the server and
# the materializer without, 0.56-0.64 s with. Up-to-date files are skipped on a re-run (4 s);
# a file that does not compile (some packages ship templates) only stays uncompiled.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
.venv/bin/python -m compileall -q -j 0 "$site" core stores materializer wire server client \
  cli loadtest > /dev/null 2>&1 || true

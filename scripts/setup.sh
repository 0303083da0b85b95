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

#!/usr/bin/env bash
# Sets up a fresh machine: uv, a Python 3.11 virtualenv in .venv, and Ferry installed in it
# (editable). `bash scripts/setup.sh dev` adds the test and lint tools.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "dev" ] && extras="[dev]"
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check uv
fi
[ -x .venv/bin/python ] || "$PYTHON" -m uv venv --quiet --python 3.11 .venv
"$PYTHON" -m uv pip install --quiet --python .venv/bin/python -e ".$extras"

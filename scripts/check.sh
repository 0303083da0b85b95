#!/usr/bin/env bash
# Static checks: lint, format, types, import layering, protos. Needs `bash scripts/setup.sh dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
bash scripts/check-protos.sh

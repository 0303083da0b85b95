#!/usr/bin/env bash
# Sets up (Ferry, and redis-server/redis-benchmark from Debian if missing) and runs the
# materialization benchmark. Arguments go to loadtest/materialize_bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-redis.sh
bash scripts/setup.sh loadtest
exec .venv/bin/python loadtest/materialize_bench.py "$@"

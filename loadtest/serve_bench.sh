#!/usr/bin/env bash
# Sets up (Ferry with the loadtest extra; redis-server and h2load from Debian if missing) and
# runs the serving benchmark. Arguments go to loadtest/serve_bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-redis.sh
bash scripts/install-debian.sh h2load=nghttp2-client
bash scripts/setup.sh loadtest
exec .venv/bin/python loadtest/serve_bench.py "$@"

#!/usr/bin/env bash
# Sets up everything the tests need and runs the whole suite. Extra arguments go to pytest.
# Installs redis-server and the Go and Java toolchains (client tests) from Debian's packages if
# missing; the tests start their own servers on free loopback ports and stop them by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-redis.sh
bash scripts/install-client-toolchains.sh
bash scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Sets up everything the tests need and runs the whole suite. Extra arguments go to pytest.
# Installs redis-server from Debian's packages if missing; the tests start their own
# servers on free loopback ports and stop them by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools >/dev/null
fi
bash scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"

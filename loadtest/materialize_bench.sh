#!/usr/bin/env bash
# Sets up (Ferry, and redis-server/redis-benchmark from Debian if missing) and runs the
# materialization benchmark. Arguments go to loadtest/materialize_bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-benchmark >/dev/null || ! command -v redis-server >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools >/dev/null
fi
bash scripts/setup.sh
exec .venv/bin/python loadtest/materialize_bench.py "$@"

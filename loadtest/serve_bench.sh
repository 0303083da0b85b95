#!/usr/bin/env bash
# Sets up (Ferry, and redis-server from Debian if missing) and runs the serving benchmark.
# Arguments go to loadtest/serve_bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools >/dev/null
fi
bash scripts/setup.sh
exec .venv/bin/python loadtest/serve_bench.py "$@"

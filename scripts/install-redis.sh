#!/usr/bin/env bash
# Installs redis-server, redis-cli and redis-benchmark from Debian's packages if missing.
set -euo pipefail
bash "$(dirname "$0")/install-debian.sh" \
  redis-server=redis-server redis-cli=redis-tools redis-benchmark=redis-tools

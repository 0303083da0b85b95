#!/usr/bin/env bash
# Installs Debian packages whose commands (or files) are missing. Arguments: COMMAND=PACKAGE
# or /ABSOLUTE/PATH=PACKAGE pairs, e.g.
#   bash scripts/install-debian.sh redis-server=redis-server h2load=nghttp2-client
set -euo pipefail
missing=()
for pair in "$@"; do
  what="${pair%%=*}"
  if [[ "$what" == /* ]]; then
    [ -e "$what" ] || missing+=("${pair#*=}")
  else
    command -v "$what" >/dev/null || missing+=("${pair#*=}")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

#!/usr/bin/env bash
# Generates the Java code of protos/ (packages dev.ferry.api.*), plus google.rpc.Status and
# ErrorInfo for reading error details, into OUT. The google/rpc protos come from the
# googleapis-common-protos package of the dev install. Needs protoc and grpc_java_plugin
# (bash scripts/install-client-toolchains.sh).
# Usage: bash scripts/gen-java.sh OUT
set -euo pipefail
out="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"
PY=${PYTHON:-$root/.venv/bin/python}
googleapis=$("$PY" -c 'import pathlib, google.rpc.status_pb2 as s; print(pathlib.Path(s.__file__).parents[2])')
cd "$root/protos"
mkdir -p "$out"
mapfile -t files < <(find ferry -name '*.proto' | sort)
protoc -I . -I "$googleapis" \
  --java_out="$out" \
  --plugin=protoc-gen-grpc-java="$(command -v grpc_java_plugin)" --grpc-java_out="$out" \
  "${files[@]}" google/rpc/status.proto google/rpc/error_details.proto

#!/usr/bin/env bash
# Regenerates the Python code and .pyi stubs beside every .proto under protos/.
# Usage: bash scripts/gen-protos.sh   (needs the dev install: grpcio-tools, mypy-protobuf)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BIN=$(dirname "$PY")
find protos/ferry -name '*_pb2*.py*' -delete
mapfile -t files < <(cd protos && find ferry -name '*.proto' | sort)
(cd protos && "$OLDPWD/$PY" -m grpc_tools.protoc -I . \
  --python_out=. --grpc_python_out=. \
  --plugin=protoc-gen-mypy="$OLDPWD/$BIN/protoc-gen-mypy" --mypy_out=. \
  --plugin=protoc-gen-mypy_grpc="$OLDPWD/$BIN/protoc-gen-mypy_grpc" --mypy_grpc_out=. \
  "${files[@]}")

#!/usr/bin/env bash
# Generates the Go code of protos/ into GOPATH_DIR/src/ferry/gen/go, the import path the
# protos' go_package options name (ferry/gen/go/ferry/api/...). Needs protoc, protoc-gen-go
# and protoc-gen-go-grpc (bash scripts/install-client-toolchains.sh).
# Usage: bash scripts/gen-go.sh GOPATH_DIR
set -euo pipefail
out="$1/src/ferry/gen/go"
cd "$(dirname "$0")/../protos"
mkdir -p "$out"
mapfile -t files < <(find ferry -name '*.proto' | sort)
protoc -I . \
  --go_out="$out" --go_opt=paths=source_relative \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
  "${files[@]}"

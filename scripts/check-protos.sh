#!/usr/bin/env bash
# Fails when the committed generated code differs from a fresh generation, buf lint or buf
# format finds fault, or buf.gen.yaml does not generate Go and TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .tools/node_modules/.bin/buf ] || [ ! -x .tools/node_modules/.bin/protoc-gen-es ]; then
  mkdir -p .tools && (cd .tools && npm install --silent --no-audit --no-fund \
    @bufbuild/buf@1.75.0 @bufbuild/protoc-gen-es@2.13.0)
fi
.tools/node_modules/.bin/buf lint protos
.tools/node_modules/.bin/buf format --diff --exit-code protos
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
PATH="$PWD/.tools/node_modules/.bin:$PATH" .tools/node_modules/.bin/buf generate -o "$generated"
for file in go/ferry/api/serving/v1/serving_grpc.pb.go ts/ferry/api/serving/v1/serving_pb.ts; do
  test -s "$generated/gen/$file" || { echo "buf generate made no gen/$file" >&2; exit 1; }
done
bash scripts/gen-protos.sh
if ! git diff --exit-code --stat -- protos || [ -n "$(git status --porcelain --untracked-files=all -- protos)" ]; then
  echo "generated protobuf code is out of sync with protos/: run bash scripts/gen-protos.sh and commit" >&2
  git status --porcelain -- protos >&2
  exit 1
fi
echo "protos: buf lint and format clean, generated code in sync, buf generate makes Go and TypeScript"

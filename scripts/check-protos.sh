#!/usr/bin/env bash
# Fails when the committed generated code differs from a fresh generation, or buf lint fails.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .tools/node_modules/.bin/buf ]; then
  mkdir -p .tools && (cd .tools && npm install --silent --no-audit --no-fund @bufbuild/buf@1.75.0)
fi
.tools/node_modules/.bin/buf lint protos
bash scripts/gen-protos.sh
if ! git diff --exit-code --stat -- protos || [ -n "$(git status --porcelain --untracked-files=all -- protos)" ]; then
  echo "generated protobuf code is out of sync with protos/: run bash scripts/gen-protos.sh and commit" >&2
  git status --porcelain -- protos >&2
  exit 1
fi
echo "protos: buf lint clean, generated code in sync"

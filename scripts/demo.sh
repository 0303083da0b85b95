#!/usr/bin/env bash
# The main job on the embedded default, from nothing: set up, write sample fraud data
# (datasets/fraud.py, snapshots over the last three days), validate the sample repo,
# materialize it into SQLite, start the gRPC server, query it with the client, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
repo=samples/fraud/feature_repo.yaml
rm -rf samples/fraud/data samples/fraud/online.db*
.venv/bin/python datasets/fraud.py samples/fraud/data --users 2000 --merchants 200 \
  --transactions 4000 --start "$(date -u -d '3 days ago' +%F)" >/dev/null
log=$(mktemp)
trap 'kill -TERM "${server:-}" 2>/dev/null || true; rm -f "$log"' EXIT
set -x
.venv/bin/ferry validate $repo
.venv/bin/ferry materialize-incremental $repo --end now
.venv/bin/ferry lookup $repo --view user_merchant_stats --entity user_id=1642 --entity merchant_id=m0000187
{ set +x; } 2>/dev/null
.venv/bin/ferry serve $repo --port 0 >"$log" 2>/dev/null &
server=$!
until grep -q serving "$log"; do sleep 0.05; kill -0 $server; done
target=$(.venv/bin/python -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["address"])' "$log")
set -x
.venv/bin/ferry get --target "$target" --feature-service fraud_v1 \
  --entity user_id=1,2,999999 --entity merchant_id=m0000001,m0000002,m0000003
.venv/bin/ferry get --target "$target" --features user_stats:txn_count_7d,merchant_stats:category \
  --entity user_id=7 --entity merchant_id=m0000042 --json
kill -TERM $server
wait $server
{ set +x; } 2>/dev/null
server=

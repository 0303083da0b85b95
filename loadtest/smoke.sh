#!/usr/bin/env bash
# Runs every documented command of the load-test kit once, tiny and bounded, against a
# `ferry serve` of the sample repo on SQLite that it starts and stops (by PID) itself:
# workload.py (JSON and a ghz config), loadgen.py (closed, open, sweep with a plot, stream)
# and h2load_run.py. Proves the kit works; asserts no speed. Needs the loadtest extra and h2load.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill -TERM "${server:-}" 2>/dev/null || true; wait "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
repo=samples/fraud/feature_repo.yaml
py=.venv/bin/python
$py datasets/fraud.py "$work/data" --users 300 --merchants 30 --transactions 300 \
  --start "$(date -u -d '3 days ago' +%F)" >/dev/null
export FERRY_OFFLINE_ROOT="$work/data" FERRY_ONLINE_STORE="sqlite:///$work/online.db"
.venv/bin/ferry materialize-incremental $repo --end now >/dev/null
.venv/bin/ferry serve $repo --port 0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
until grep -q serving "$work/serve.out"; do sleep 0.05; kill -0 $server; done
target=$($py -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["address"])' "$work/serve.out")
set -x
$py loadtest/workload.py $repo --batch 10 --skew zipf --json "$work/b10.json" \
  --ghz-config "$work/ghz.json" --target "$target"
bounds=(--seconds 0.5 --warmup-s 0.1 --processes 1 --max-calls 2000)
$py loadtest/loadgen.py $repo --target "$target" "${bounds[@]}" --concurrency 4 --batch 10 >"$work/closed.json"
$py loadtest/loadgen.py $repo --target "$target" "${bounds[@]}" --mode open --rate 200 >"$work/open.json"
$py loadtest/loadgen.py $repo --target "$target" "${bounds[@]}" --sweep 0.5 --plot "$work/sweep.png" >"$work/sweep.json"
$py loadtest/loadgen.py $repo --target "$target" "${bounds[@]}" --stream --concurrency 4 >"$work/stream.json"
$py loadtest/h2load_run.py $repo --target "$target" --calls 300 --batch 10 >"$work/h2load.json"
{ set +x; } 2>/dev/null
$py - "$work" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
for name in ("closed", "open", "sweep", "stream", "h2load"):
    report = json.loads((work / f"{name}.json").read_text())
    runs = [report["ferry"], report["echo"]]
    if name == "sweep":
        runs = [r["max"] for r in runs] + [p for r in runs for p in r["open"]]
    for run in runs:
        assert run.get("errors", {}) == {}, (name, run)
        assert run.get("calls", run.get("succeeded")), (name, run)
assert (work / "sweep.png").stat().st_size > 0
print("load-test kit smoke: every command ran, no call failed")
PY

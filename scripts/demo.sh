#!/usr/bin/env bash
# The main job on the embedded default, from nothing: set up, write the sample fraud data
# (datasets/fraud.py), validate the sample repo, materialize it into SQLite, print stored rows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
repo=samples/fraud/feature_repo.yaml
if [ ! -d samples/fraud/data ]; then
  .venv/bin/python datasets/fraud.py samples/fraud/data --users 2000 --merchants 200 \
    --transactions 4000 >/dev/null
fi
rm -f samples/fraud/online.db*
set -x
.venv/bin/ferry validate $repo
.venv/bin/ferry materialize $repo --start 2025-12-25 --end 2026-01-03T12:00:00Z
.venv/bin/ferry lookup $repo --view user_stats --entity user_id=1,2,999999
.venv/bin/ferry lookup $repo --view user_merchant_stats --entity user_id=1642,306 \
  --entity merchant_id=m0000187,m0000041

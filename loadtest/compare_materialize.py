"""The materialization job of two git revisions in one run, interleaved: did a change pay?

Generates the fraud data set once (datasets/fraud.py at ``--users``), checks BASE out into
a temporary git worktree, then runs ``ferry materialize`` of each revision alternately
(BASE, HEAD, BASE, HEAD, ...) into a fresh redis-server each time, each revision's code on
``PYTHONPATH``. Prints per revision the medians of the job's own seconds, its CPU (user +
system, wait4), the Redis server's CPU meanwhile, rows written and peak RSS, and HEAD
against BASE. A benchmark, not a test.

    python loadtest/compare_materialize.py HEAD~1 --users 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from revisions import ROOT, environment_of, worktree

sys.path.insert(0, str(ROOT))  # the real-service launchers live with the tests
from tests.services import running_redis

REPO = ROOT / "samples" / "fraud" / "feature_repo.yaml"
WINDOW = ["--start", "2025-12-01", "--end", "2026-01-04T00:00:00Z"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the revision to compare against (e.g. HEAD~1)")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ferry-compare-materialize-"))
    try:
        data = work / "data"
        fraud = [sys.executable, str(ROOT / "datasets" / "fraud.py"), str(data)]
        sizes = ["--users", str(args.users), "--merchants", str(max(10, args.users // 20))]
        subprocess.run(
            [*fraud, *sizes, "--transactions", str(args.users)], check=True, capture_output=True
        )
        with worktree(args.base, work / "base") as base_tree:
            runs: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
            for round_ in range(args.rounds):
                for name, tree in (("base", base_tree), ("head", ROOT)):
                    print(f"round {round_ + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                    with running_redis(work) as redis:
                        runs[name].append(_job(tree, data, redis.url, redis.process.pid))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report: dict[str, Any] = {"users": args.users, "rounds": args.rounds, "base": args.base}
    for name, results in runs.items():
        report[name] = {key: statistics.median(r[key] for r in results) for key in results[0]}
    report["head_vs_base"] = {
        key: round(report["head"][key] / report["base"][key], 3)
        for key in ("in_job_s", "cpu_s", "wall_s", "redis_cpu_s")
    }
    print(json.dumps(report, indent=2))


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _job(tree: Path, data: Path, url: str, redis_pid: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "ferry.cli.main", "materialize", str(REPO)]
    command += ["--offline-root", str(data), "--online-store", url, *WINDOW]
    started = time.perf_counter()
    redis_before = _cpu_of(redis_pid)
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.DEVNULL, env=environment_of(tree)
        )
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"the job of {tree} failed")
        out.seek(0)
        total = json.loads(out.read().splitlines()[-1])
    return {
        "wall_s": round(time.perf_counter() - started, 2),
        "in_job_s": total["seconds"],
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "redis_cpu_s": round(_cpu_of(redis_pid) - redis_before, 2),
        "rows_read": total["rows_read"],
        "rows_written": total["rows_written"],
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


if __name__ == "__main__":
    main()

"""Serving benchmark of two git revisions in one run, interleaved: did a change cost speed?

Checks BASE out into a temporary git worktree and runs ``serve_bench.py`` of each revision
alternately (BASE, HEAD, BASE, HEAD, ...), each with its own code on ``PYTHONPATH`` in
front of the editable install, so both meet the same machine load. Prints, per batch, the
median over rounds of server CPU per call, RPS and the ratios to the echo, and HEAD's
median against BASE's. Bounded by ``--rounds`` x the serve_bench flags. A benchmark, not a
test.

    python loadtest/compare_revisions.py f26ce6b --rounds 3 -- --seconds 3 --no-stream
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from revisions import ROOT, environment_of, worktree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the revision to compare against (e.g. main~3)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each revision")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.bench_args = argv[split + 1 :]  # after --: flags for serve_bench.py
    work = Path(tempfile.mkdtemp(prefix="ferry-compare-"))
    try:
        with worktree(args.base, work / "base") as base_tree:
            results: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
            for round_ in range(args.rounds):
                for name, tree in (("base", base_tree), ("head", ROOT)):
                    print(f"round {round_ + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                    results[name].append(_bench(tree, work / f"{name}-{round_}", args.bench_args))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = _summary(results)
    print(json.dumps(report, indent=2))
    _print_table(args.base, args.rounds, report)


def _bench(tree: Path, out: Path, bench_args: list[str]) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, str(tree / "loadtest" / "serve_bench.py"), "--out", str(out), *bench_args],
        check=True,
        env=environment_of(tree),
        stdout=subprocess.DEVNULL,
        timeout=1800,
    )
    return dict(json.loads((out / "results.json").read_text()))


def _summary(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for i, case in enumerate(results["head"][0]["cases"]):
        row: dict[str, Any] = {"batch": case["batch"]}
        for name, runs in results.items():
            ferry = [run["cases"][i]["ferry"] for run in runs]
            ratios = [run["cases"][i]["ratio_to_echo"] for run in runs]
            row[name] = {
                "cpu_us_per_call": statistics.median(f["server_cpu_us_per_call"] for f in ferry),
                "rps": statistics.median(f["rps"] for f in ferry),
                "cpu_ratio_to_echo": statistics.median(r["server_cpu_per_call"] for r in ratios),
                "rps_ratio_to_echo": statistics.median(r["rps"] for r in ratios),
            }
        row["head_cpu_vs_base"] = round(
            row["head"]["cpu_us_per_call"] / row["base"]["cpu_us_per_call"], 3
        )
        row["head_rps_vs_base"] = round(row["head"]["rps"] / row["base"]["rps"], 3)
        rows.append(row)
    return rows


def _print_table(base: str, rounds: int, report: list[dict[str, Any]]) -> None:
    print(f"\nmedians of {rounds} interleaved rounds; base = {base}, head = the work tree")
    print(
        "| batch | base CPU µs/call | head CPU µs/call | head/base CPU | base RPS | head RPS |"
        " head/base RPS | base CPU x echo | head CPU x echo |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in report:
        b, h = row["base"], row["head"]
        print(
            f"| {row['batch']} | {b['cpu_us_per_call']:.0f} | {h['cpu_us_per_call']:.0f} | "
            f"{row['head_cpu_vs_base']} | {b['rps']:,.0f} | {h['rps']:,.0f} | "
            f"{row['head_rps_vs_base']} | {b['cpu_ratio_to_echo']} | "
            f"{h['cpu_ratio_to_echo']} |"
        )


if __name__ == "__main__":
    main()

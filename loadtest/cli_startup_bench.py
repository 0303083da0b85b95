"""CLI start-up benchmark: wall time of `ferry --help`, of every `ferry COMMAND --help`, of a
usage error, and of `ferry get` against a running server, beside the interpreter's own
start-up (`python -c pass`) in the same run. Medians of --runs runs each, in ms.

    python loadtest/cli_startup_bench.py --runs 7

Targets (issue 11): under 300 ms for `--help`, under 500 ms for `ferry get`. A figure, not a
test: it prints, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FERRY = [sys.executable, "-m", "ferry.cli.main"]
SMALL = ["--users", "200", "--merchants", "20", "--transactions", "400"]
COMMANDS = [
    "validate",
    "init-store",
    "materialize",
    "materialize-incremental",
    "lookup",
    "delete-rows",
    "serve",
    "get",
    "health",
    "training-frame",
    "verify",
]


def median_ms(argv: list[str], runs: int, ok: tuple[int, ...] = (0,)) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, timeout=60)
        times.append(time.perf_counter() - started)
        if done.returncode not in ok:
            raise SystemExit(f"{argv} exited {done.returncode}: {done.stderr.decode()}")
    return round(statistics.median(times) * 1e3, 1)


def served_sample(work: Path) -> tuple[subprocess.Popen[str], str]:
    """The sample repo on a small data set, materialized into SQLite and served."""
    data = work / "data"
    subprocess.run(
        [sys.executable, str(ROOT / "datasets" / "fraud.py"), str(data), *SMALL],
        check=True,
        capture_output=True,
    )
    repo = work / "feature_repo.yaml"
    shutil.copy(ROOT / "samples" / "fraud" / "feature_repo.yaml", repo)
    common = [str(repo), "--offline-root", str(data), "--online-store", f"sqlite:///{work}/o.db"]
    window = ["--start", "2000-01-01", "--end", "now"]
    subprocess.run([*FERRY, "materialize", *common, *window], check=True, capture_output=True)
    server = subprocess.Popen(
        [*FERRY, "serve", *common, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    return server, json.loads(server.stdout.readline())["address"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (median)")
    args = parser.parse_args()
    results: dict[str, float] = {
        "python -c pass (baseline)": median_ms([sys.executable, "-c", "pass"], args.runs),
        "ferry --help": median_ms([*FERRY, "--help"], args.runs),
    }
    for command in COMMANDS:
        results[f"ferry {command} --help"] = median_ms([*FERRY, command, "--help"], args.runs)
    results["ferry serve --registry-only (usage error)"] = median_ms(
        [*FERRY, "serve", "--registry-only"], args.runs, ok=(2,)
    )
    with tempfile.TemporaryDirectory(prefix="ferry-startup-") as work:
        server, target = served_sample(Path(work))
        try:
            get = [*FERRY, "get", "--target", target, "--feature-service", "fraud_v1"]
            entities = ["--entity", "user_id=1,2", "--entity", "merchant_id=m0000001,m0000002"]
            results["ferry get (2 rows, fraud_v1)"] = median_ms([*get, *entities], args.runs)
        finally:
            server.terminate()
            server.wait(timeout=30)
            if server.stdout is not None:
                server.stdout.close()
    width = max(map(len, results))
    base = results["python -c pass (baseline)"]
    for name, ms in results.items():
        print(f"{name.ljust(width)}  {ms:7.1f} ms  ({ms / base:4.1f}x python -c pass)")


if __name__ == "__main__":
    main()

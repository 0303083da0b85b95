"""Registry benchmark: GetModelVersion over gRPC (answered from memory) beside MLflow's own
`MlflowClient.get_model_version_by_alias` on the same sqlite store, in the same run.

    python loadtest/registry_bench.py --calls 2000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from ferry.client import FerryClient


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(quantile: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1e3, 3)

    return {
        "p50_ms": pick(0.5),
        "p99_ms": pick(0.99),
        "mean_ms": round(statistics.fmean(ordered) * 1e3, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    # Optional, heavy dependency (the registry extra): only this benchmark needs it here.
    from mlflow.tracking import MlflowClient

    work = Path(tempfile.mkdtemp(prefix="ferry-registry-bench-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow = MlflowClient(uri, uri)
    mlflow.create_registered_model("bench")
    mlflow.create_model_version(
        "bench", source="s3://bench/model", tags={"ferry.feature_service": "fraud_v1"}
    )
    mlflow.set_registered_model_alias("bench", "champion", "1")

    baseline = []
    for _ in range(min(args.calls, 500)):  # MLflow is ~100x slower: fewer calls suffice
        started = time.perf_counter()
        mlflow.get_model_version_by_alias("bench", "champion")
        baseline.append(time.perf_counter() - started)

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "serve",
            "--registry-only",
            "--registry-uri",
            uri,
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        target = json.loads(server.stdout.readline())["address"]
        ferry = []
        with FerryClient(target, timeout_s=5) as client:
            client.get_model_version("bench", alias="champion")  # the first ask loads it
            for _ in range(args.calls):
                started = time.perf_counter()
                client.get_model_version("bench", alias="champion")
                ferry.append(time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        "ferry_grpc_get_model_version": percentiles(ferry),
        "mlflow_get_model_version_by_alias_sqlite": percentiles(baseline),
        "calls": {"ferry": len(ferry), "mlflow": len(baseline)},
    }
    result["p50_ratio_mlflow_over_ferry"] = round(
        result["mlflow_get_model_version_by_alias_sqlite"]["p50_ms"]
        / result["ferry_grpc_get_model_version"]["p50_ms"],
        1,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

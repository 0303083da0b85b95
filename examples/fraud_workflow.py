"""The whole loop on the fraud sample: train from point-in-time features, register the model
in MLflow with its feature service, promote it, serve it, score with it, then promote a
second version and watch the prediction service learn of it.

    .venv/bin/python examples/fraud_workflow.py [WORKDIR]

Everything runs locally: MLflow on a sqlite file (no server), the online store in SQLite,
`ferry serve` on a free loopback port (stopped at the end).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ferry.client import AsyncFerryClient, FerryClient, bind_feature_service
from ferry.client.training import get_training_frame
from ferry.core import load_repo

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "samples" / "fraud" / "feature_repo.yaml"
MODEL = "fraud-detector"
SERVICE = "fraud_v1"
NUMERIC = [
    "user_stats:txn_count_7d",
    "user_stats:txn_sum_30d",
    "user_stats:avg_txn_amount",
    "user_stats:is_premium",
    "merchant_stats:chargeback_rate",
    "merchant_stats:txn_count_1d",
]
EMBEDDING = "user_stats:risk_embedding"


def to_matrix(columns: dict[str, list[Any]]) -> np.ndarray:
    """The model's input, built the same way from a training frame and from served values:
    numbers as floats (missing -> NaN) and the 8-wide embedding spread over 8 columns."""
    rows = len(columns[NUMERIC[0]])
    numeric = [[np.nan if v is None else float(v) for v in columns[name]] for name in NUMERIC]
    embedding = [v if v is not None else [np.nan] * 8 for v in columns[EMBEDDING]]
    return np.column_stack([np.array(numeric).T.reshape(rows, -1), np.array(embedding)])


def train(frame: Any, seed: int, c: float) -> tuple[Any, float, dict[str, Any]]:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = to_matrix({name: frame[name].to_pylist() for name in [*NUMERIC, EMBEDDING]})
    y = np.array(frame["is_fraud"].to_pylist())
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=seed)
    params = {"C": c, "max_iter": 1000, "class_weight": "balanced"}
    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(**params))
    model.fit(x_train, y_train)
    return model, float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])), params


def log_and_register(model: Any, auc: float, params: dict[str, Any]) -> int:
    # The registry extra's packages: imported where used, as in train().
    import mlflow
    import mlflow.sklearn
    import sklearn
    import skops

    step("logging the model to MLflow and registering it")
    with mlflow.start_run():
        mlflow.log_params(params)
        mlflow.log_metric("auc", auc)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=MODEL,
            # numpy.dtype: the imputer keeps the input dtype; a type we create, so trusted.
            skops_trusted_types=["numpy.dtype"],
            # Named, not inferred: inferring them loads the model in a fresh interpreter to
            # see what it imports, which took 5 s here and over a minute on a busy machine.
            pip_requirements=[
                f"scikit-learn=={sklearn.__version__}",
                f"numpy=={np.__version__}",
                f"skops=={skops.__version__}",
            ],
        )
    return int(info.registered_model_version)


_STARTED = time.monotonic()


def step(what: str) -> None:
    """Say what the example is doing now, and how long it has been going."""
    print(f"[{time.monotonic() - _STARTED:5.1f} s] {what} ...", flush=True)


async def watch_for(target: str, version: int, seconds: float) -> str:
    async with AsyncFerryClient(target) as client:
        stream = client.watch_model_version(MODEL, alias="champion")
        first = await anext(stream)
        print(f"watcher: champion is version {first.version}")
        async with asyncio.timeout(seconds):
            async for change in stream:
                if change.version == version:
                    await stream.aclose()
                    return f"watcher: champion moved to version {change.version}"
    return "watcher: no change seen"


def main() -> None:
    warnings.simplefilter("ignore")
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="ferry-workflow-"))
    work.mkdir(parents=True, exist_ok=True)
    start = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    step("writing a synthetic fraud data set (5,000 users, 20,000 transactions)")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "datasets" / "fraud.py"),
            str(work / "data"),
            "--users",
            "5000",
            "--merchants",
            "300",
            "--transactions",
            "20000",
            "--start",
            start,
        ],
        check=True,
        capture_output=True,
    )
    repo = dataclasses.replace(load_repo(REPO), offline_root=str(work / "data"))
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    online = f"sqlite:///{work / 'online.db'}"
    import mlflow

    mlflow.set_tracking_uri(tracking)
    # With a sqlite tracking URI, MLflow would put artifacts in ./mlruns of the working
    # directory: keep them in the work folder with everything else.
    if mlflow.get_experiment_by_name("fraud") is None:
        mlflow.create_experiment("fraud", artifact_location=(work / "artifacts").as_uri())
    mlflow.set_experiment("fraud")

    # 1. Training data: every labelled transaction with its features as of its own time.
    step("building the training frame: each transaction's features as of its own time")
    transactions = pq.read_table(work / "data" / "transactions.parquet")
    frame = get_training_frame(repo, transactions, feature_service=SERVICE)
    print(f"training frame: {frame.num_rows} rows x {frame.num_columns} columns")

    # 2. Train, log, register, bind to the feature service, promote (alias and stage).
    step("training version 1 (logistic regression)")
    model, auc, params = train(frame, seed=1, c=0.1)
    v1 = log_and_register(model, auc, params)
    bind_feature_service(MODEL, v1, SERVICE, tracking)
    registry = mlflow.MlflowClient(tracking, tracking)
    registry.set_registered_model_alias(MODEL, "champion", str(v1))
    registry.transition_model_version_stage(MODEL, str(v1), "Production")
    print(f"registered {MODEL} version {v1}: AUC {auc:.3f}, alias champion, stage Production")

    # 3. Load the online store and serve features and the registry.
    ferry = [sys.executable, "-m", "ferry.cli.main"]
    step("materializing the online store (SQLite) up to now")
    subprocess.run(
        [
            *ferry,
            "materialize-incremental",
            str(REPO),
            "--offline-root",
            str(work / "data"),
            "--online-store",
            online,
            "--end",
            "now",
        ],
        check=True,
        capture_output=True,
    )
    step("starting ferry serve with the MLflow registry")
    server = subprocess.Popen(
        [
            *ferry,
            "serve",
            str(REPO),
            "--online-store",
            online,
            "--registry-uri",
            tracking,
            "--poll-interval-s",
            "0.5",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=(work / "serve.log").open("w"),
        text=True,
    )
    try:
        assert server.stdout is not None
        target = json.loads(server.stdout.readline())["address"]

        # 4. The prediction service: features of the live model's service, then score.
        step("asking for the live model's features and scoring five transactions")
        sample = transactions.slice(0, 5)
        with FerryClient(target, timeout_s=5) as client:
            version, features = client.get_model_features(
                MODEL,
                alias="champion",
                entities={
                    "user_id": sample["user_id"].to_pylist(),
                    "merchant_id": sample["merchant_id"].to_pylist(),
                },
            )
        live = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
        scores = live.predict_proba(to_matrix(features.to_dict()))[:, 1]
        print(f"serving version {version.version} ({version.feature_service}):")
        for user, merchant, score in zip(
            sample["user_id"].to_pylist(), sample["merchant_id"].to_pylist(), scores, strict=True
        ):
            print(f"  user {user:>5} at {merchant}: fraud score {score:.3f}")

        # 5. A second version; promoting it reaches a watcher within about a second.
        step("training version 2")
        model2, auc2, params2 = train(frame, seed=2, c=10.0)
        v2 = log_and_register(model2, auc2, params2)
        bind_feature_service(MODEL, v2, SERVICE, tracking)
        print(f"registered version {v2}: AUC {auc2:.3f}")

        step("promoting version 2 while a watcher streams the champion alias")

        async def promote_and_watch() -> str:
            watcher = asyncio.create_task(watch_for(target, v2, 10))
            await asyncio.sleep(1)
            registry.set_registered_model_alias(MODEL, "champion", str(v2))
            return await watcher

        print(asyncio.run(promote_and_watch()))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"work directory: {work}")


if __name__ == "__main__":
    main()

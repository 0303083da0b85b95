"""MLflow for registry tests: an embedded sqlite store, and a real `mlflow server` started
once per session on a free loopback port (stopped by PID)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.services import free_port

MODEL = "fraud-detector"
WEBHOOK_KEY = "h4pXQ9mI3wQnJ6b1tq2n1bO8kVjHq5p1u9yV3sX0cE0="  # Fernet key, fixed for restarts


def mlflow_client(uri: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.tracking import MlflowClient  # heavy; only registry tests need it

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register_versions(
    uri: str, name: str = MODEL, services: tuple[str, ...] = ("fraud_v1", "")
) -> Any:
    """A registered model with one version per entry of ``services`` ("" = no binding)."""
    client = mlflow_client(uri)
    client.create_registered_model(name)
    for service in services:
        tags = {"ferry.feature_service": service} if service else {}
        client.create_model_version(name, source=f"s3://ferry-tests/models/{name}", tags=tags)
    return client


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@dataclass
class MlflowServer:
    process: subprocess.Popen[bytes]
    uri: str

    def pause(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    work = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": WEBHOOK_KEY,
        # MLflow caches the webhook list per event for 60 s by default: a webhook created
        # after an event of its kind stays silent that long. Keep the cache short.
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    log = (work / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{work / 'mlflow.db'}",
            "--default-artifact-root",
            str(work / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.close()
            raise RuntimeError(
                "mlflow server did not start:\n" + (work / "server.log").read_text()[-3000:]
            )
        time.sleep(0.2)
    server = MlflowServer(process, uri)
    yield server
    server.resume()
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()

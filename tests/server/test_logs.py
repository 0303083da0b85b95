"""JSON logs and the access log of a real `ferry serve`: every line is a JSON object; a
failed call is logged with its method, code, duration, peer and size; successful calls only
as sampled; tokens never."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ferry.client import FerryClient, NotFoundError
from tests.e2e.fraud import SAMPLE_REPO

ENTITIES = {"user_id": [1], "merchant_id": ["m0000001"]}


def served_log(store: str, log: Path, *flags: str) -> list[dict[str, object]]:
    """Run a server, make one good and one failing call, stop it; its log lines, parsed."""
    serve = [sys.executable, "-m", "ferry.cli.main", "serve", str(SAMPLE_REPO)]
    serve += ["--online-store", store, "--port", "0", "--log-format", "json", *flags]
    with log.open("w") as stderr:
        server = subprocess.Popen(
            serve,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert server.stdout is not None
            target = json.loads(server.stdout.readline())["address"]
            with FerryClient(target, timeout_s=5, token="s3cret-token-never-logged") as client:
                client.get_online_features(entities=ENTITIES, feature_service="fraud_v1")
                with pytest.raises(NotFoundError):
                    client.get_online_features(entities=ENTITIES, feature_service="nope")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
            if server.stdout is not None:
                server.stdout.close()
    text = log.read_text()
    assert "s3cret-token-never-logged" not in text
    return [json.loads(line) for line in text.splitlines()]  # each line is one object


def test_failures_are_logged_as_json_and_successes_only_when_sampled(
    sqlite_store: str, tmp_path: Path
) -> None:
    lines = served_log(sqlite_store, tmp_path / "serve.log")
    assert all({"time", "level", "logger", "event", "pid"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "ferry.access"]
    assert len(access) == 1
    (failed,) = access
    assert failed["method"] == "/ferry.api.serving.v1.ServingService/GetOnlineFeatures"
    assert failed["code"] == "NOT_FOUND"
    assert failed["level"] == "WARNING"
    assert isinstance(failed["duration_ms"], float)
    assert str(failed["peer"]).startswith("ipv4:127.0.0.1:")
    assert failed["request_bytes"] > 0  # type: ignore[operator]
    assert "unknown feature service 'nope'" in str(failed["message"])

    sampled = served_log(sqlite_store, tmp_path / "all.log", "--access-log-sample", "1")
    codes = [line["code"] for line in sampled if line["logger"] == "ferry.access"]
    assert codes == ["OK", "NOT_FOUND"]

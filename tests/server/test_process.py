"""`ferry serve` as a process: signals, reload, workers, reflection, `ferry get`, sync client."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ferry.client import AsyncFerryClient, FerryClient, NotFoundError
from ferry.core import FeatureRepo, load_repo
from tests.e2e.fraud import SAMPLE_REPO
from tests.server.conftest import materialize_into
from tests.services import RedisServer, start_redis


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    lines: list[dict[str, object]]
    stderr: IO[str]

    @property
    def target(self) -> str:
        return str(self.lines[0]["address"])

    def close(self) -> None:
        """Kill the process if it still runs (by its PID), and close our ends of its files."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()


def start_serve(
    repo_file: Path,
    store: str,
    log: Path,
    *args: str,
    ready: int = 1,
    offline_root: str | None = None,
) -> ServerProcess:
    stderr = log.open("w+")
    extra = ["--offline-root", offline_root] if offline_root else []
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "serve",
            str(repo_file),
            "--online-store",
            store,
            "--port",
            "0",
            *extra,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines = []
    assert process.stdout is not None
    for _ in range(ready):
        line = process.stdout.readline()
        try:
            lines.append(json.loads(line))
        except ValueError:  # it did not start, or said so badly: stop it, by PID, and say why
            ServerProcess(process, lines, stderr).close()
            raise AssertionError(f"stdout line {line!r}; log: {log.read_text()}") from None
    return ServerProcess(process, lines, stderr)


@pytest.fixture
def serving(loaded_store: str, tmp_path: Path) -> Iterator[ServerProcess]:
    repo_file = tmp_path / "repo.yaml"
    shutil.copy(SAMPLE_REPO, repo_file)
    server = start_serve(repo_file, loaded_store, tmp_path / "serve.log")
    yield server
    server.close()


def test_sigterm_under_load_drains_and_exits_0(
    served_repo: FeatureRepo, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    from tests.server.conftest import materialize_into

    materialize_into(served_repo, redis_url)
    server = start_serve(
        SAMPLE_REPO,
        redis_url,
        tmp_path / "serve.log",
        "--grace-s",
        "5",
        "--store-timeout-ms",
        "5000",
    )

    async def load() -> list[int]:
        async with AsyncFerryClient(server.target, timeout_s=10) as client:
            redis_server.cli("client", "pause", "1500", "ALL")
            calls = [
                asyncio.create_task(
                    client.get_online_features(entities={"user_id": [i]}, features=["user_stats:*"])
                )
                for i in range(1, 51)
            ]
            await asyncio.sleep(0.5)  # every call is now in flight, waiting on Redis
            server.process.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*calls, return_exceptions=True)
            return [r.row_count if not isinstance(r, Exception) else repr(r)[:200] for r in results]

    try:
        assert asyncio.run(load()) == [1] * 50
        assert server.process.wait(timeout=10) == 0
    finally:
        redis_server.cli("client", "unpause")
        server.close()
    log = (tmp_path / "serve.log").read_text()
    assert "draining" in log
    assert "Traceback" not in log


def test_sighup_reloads_and_keeps_the_old_repo_when_the_new_one_is_invalid(
    serving: ServerProcess, tmp_path: Path
) -> None:
    repo_file = tmp_path / "repo.yaml"
    entities = {"user_id": [1]}
    # Requests keep flowing on another connection through both reloads: none may fail.
    stop, served, failures = threading.Event(), [0], []

    def keep_asking() -> None:
        with FerryClient(serving.target, timeout_s=5) as other:
            while not stop.is_set():
                try:
                    other.get_online_features(
                        entities={"user_id": [1], "merchant_id": ["m"]}, feature_service="fraud_v1"
                    )
                    served[0] += 1
                except Exception as err:  # collected, and asserted below
                    failures.append(err)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        _reload_twice(serving, repo_file, entities, tmp_path)
    finally:
        stop.set()
        asker.join(timeout=10)
    assert not failures, failures[:3]
    assert served[0] > 0


def _reload_twice(
    serving: ServerProcess, repo_file: Path, entities: dict[str, list[int]], tmp_path: Path
) -> None:
    with FerryClient(serving.target, timeout_s=5) as client:
        with pytest.raises(NotFoundError):
            client.get_online_features(entities=entities, feature_service="extra")
        repo_file.write_text(
            repo_file.read_text() + '  extra:\n    features: ["user_stats:is_premium"]\n'
        )
        serving.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            try:
                result = client.get_online_features(entities=entities, feature_service="extra")
                break
            except NotFoundError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert result.names == ["user_stats:is_premium"]

        repo_file.write_text("project: [broken\n")
        serving.process.send_signal(signal.SIGHUP)
        log = tmp_path / "serve.log"
        deadline = time.monotonic() + 10
        while "reload rejected" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        again = client.get_online_features(entities=entities, feature_service="extra")
        assert again.names == ["user_stats:is_premium"]


def test_reflection_and_health_answer(serving: ServerProcess) -> None:
    with grpc.insecure_channel(serving.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        services = {s.name for r in replies for s in r.list_services_response.service}
    assert {"ferry.api.serving.v1.ServingService", "grpc.health.v1.Health"} <= services


def test_ferry_get_prints_json_lines_and_fails_cleanly(serving: ServerProcess) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "get",
            "--target",
            serving.target,
            "--features",
            "user_stats:txn_count_7d,merchant_stats:category",
            "--entity",
            "user_id=1,999999",
            "--entity",
            "merchant_id:string=m0000001,m0000002",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["user_id"] == 1
    assert first["merchant_id"] == "m0000001"
    assert first["user_stats:txn_count_7d"]["status"] in ("PRESENT", "OUTSIDE_MAX_AGE")
    assert second["user_stats:txn_count_7d"] == {
        "value": None,
        "status": "NOT_FOUND",
        "event_timestamp": None,
    }
    table = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "get",
            "--target",
            serving.target,
            "--feature-service",
            "fraud_v1",
            "--entity",
            "user_id=999999",
            "--entity",
            "merchant_id=m0000001",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "<NOT_FOUND>" in table.stdout
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "get",
            "--target",
            serving.target,
            "--feature-service",
            "nope",
            "--entity",
            "user_id=1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert failed.returncode == 1
    assert (
        failed.stderr == "ferry get: error: unknown feature service 'nope'; declared: "
        "fraud_v1, fraud_v2\n"
    )


# --host ::1 listened nowhere (gRPC read '::1:0' as host ::0.1.0.0, port 443).
@pytest.mark.parametrize(("host", "shown"), [("127.0.0.1", "127.0.0.1:"), ("::1", "[::1]:")])
def test_several_workers_share_one_port(
    loaded_store: str, tmp_path: Path, host: str, shown: str
) -> None:
    server = start_serve(
        SAMPLE_REPO, loaded_store, tmp_path / "serve.log", "--workers", "2", "--host", host, ready=2
    )
    try:
        assert server.target.startswith(shown)
        addresses = {line["address"] for line in server.lines}
        pids = {line["pid"] for line in server.lines}
        assert len(addresses) == 1
        assert len(pids) == 2
        assert server.process.pid not in pids
        for _ in range(6):  # a fresh channel each time: connections spread over workers
            with FerryClient(server.target, timeout_s=5) as client:
                result = client.get_online_features(
                    entities={"user_id": [1]}, features=["user_stats:txn_count_7d"]
                )
                assert result.row_count == 1
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(int(str(pid)), 0)
    finally:
        server.close()


def test_verify_finds_no_skew_then_reports_a_pushed_one(
    serving: ServerProcess, loaded_store: str, served_data: Path
) -> None:
    base = [
        sys.executable,
        "-m",
        "ferry.cli.main",
        "verify",
        str(SAMPLE_REPO),
        "--target",
        serving.target,
        "--offline-root",
        str(served_data),
        "--online-store",
        loaded_store,
    ]
    done = subprocess.run([*base, "--sample", "300"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["mismatches"] == 0
    assert summary["values_compared"] > 300 * 9
    with FerryClient(serving.target, timeout_s=5) as client:
        client.push(
            "user_stats",
            [{"user_id": 1, "event_timestamp": datetime.now(UTC), "txn_count_7d": 123456}],
            missing_features_are_null=True,
        )
    done = subprocess.run(
        [*base, "--views", "user_stats", "--sample", "100000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    mismatches = [json.loads(line) for line in done.stdout.splitlines()[:-1]]
    assert {m["feature"] for m in mismatches} == {
        f.name for f in load_repo(SAMPLE_REPO).view("user_stats").features
    }
    assert {m["entity"]["user_id"] for m in mismatches} == {1}
    count = next(m for m in mismatches if m["feature"] == "txn_count_7d")
    assert count["served"]["value"] == 123456
    assert "served values differ from the offline store" in done.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_a_clear_error(loaded_store: str, workers: str) -> None:
    with socket.socket() as taken:  # no SO_REUSEPORT: nothing else may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = [sys.executable, "-m", "ferry.cli.main", "serve", str(SAMPLE_REPO)]
        done = subprocess.run(
            [*serve, "--online-store", loaded_store, "--port", str(port), "--workers", workers],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stdout == ""  # never said it was serving
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_second_server_on_a_taken_port_fails_instead_of_sharing_it(
    serving: ServerProcess, loaded_store: str
) -> None:
    port = serving.target.rpartition(":")[2]
    serve = [sys.executable, "-m", "ferry.cli.main", "serve", str(SAMPLE_REPO)]
    done = subprocess.run(
        [*serve, "--online-store", loaded_store, "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert serving.process.poll() is None  # the first one serves on


def test_workers_that_fail_to_start_are_a_clear_error() -> None:
    serve = [sys.executable, "-m", "ferry.cli.main", "serve", str(SAMPLE_REPO), "--port", "0"]
    done = subprocess.run(
        [*serve, "--online-store", "nope://x", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "unsupported scheme 'nope'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_store_password_never_reaches_the_log(tmp_path: Path, served_repo: FeatureRepo) -> None:
    redis = start_redis(tmp_path)
    try:
        materialize_into(served_repo, redis.url)
        redis.cli("config", "set", "requirepass", "pw-for-this-test")
        url = f"redis://ferry:pw-for-this-test@127.0.0.1:{redis.port}/0"
        redis.cli(
            "-a",
            "pw-for-this-test",
            "acl",
            "setuser",
            "ferry",
            "on",
            ">pw-for-this-test",
            "~*",
            "+@all",
        )
        repo_file = tmp_path / "repo.yaml"
        shutil.copy(SAMPLE_REPO, repo_file)
        log = tmp_path / "serve.log"
        server = start_serve(repo_file, url, log)
        try:
            with FerryClient(server.target, timeout_s=5) as client:
                result = client.get_online_features(
                    entities={"user_id": [1]}, features=["user_stats:*"]
                )
            assert result.row_count == 1
            server.process.send_signal(signal.SIGHUP)  # the reload logs the store too
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=20) == 0
        finally:
            server.close()
        text = log.read_text()
        assert "ferry:***@127.0.0.1" in text
        assert "pw-for-this-test" not in text
    finally:
        redis.stop()

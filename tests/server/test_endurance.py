"""The long run, bounded: a `ferry serve` process through 20 Redis kills and restarts keeps
its file descriptors and memory flat, and under a bounded load its memory stops growing
after warm-up; SIGHUP with a broken certificate or access file keeps the old ones."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from ferry.client import ClientTls, FerryClient, RetryPolicy, RpcError, UnauthenticatedError
from ferry.core import FeatureRepo
from tests.certs import Authority
from tests.e2e.fraud import SAMPLE_REPO
from tests.server.conftest import materialize_into
from tests.services import start_redis

ENTITIES = {"user_id": [1, 2, 3], "merchant_id": ["m0000001", "m0000002", "m0000003"]}


@contextmanager
def ferry_serve(store: str, log: Path, *flags: str) -> Iterator[tuple[psutil.Process, str]]:
    """A `ferry serve` subprocess; yields its process and HOST:PORT, stops it by PID."""
    command = [sys.executable, "-m", "ferry.cli.main", "serve", str(SAMPLE_REPO)]
    command += ["--online-store", store, "--port", "0", *flags]
    with log.open("w") as stderr:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line, log.read_text()
        yield psutil.Process(server.pid), json.loads(line)["address"]
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()


def lookup_until_served(client: FerryClient, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            client.get_online_features(entities=ENTITIES, feature_service="fraud_v1")
            return
        except RpcError:
            assert time.monotonic() < deadline, "not served again in time"
            time.sleep(0.05)


def test_twenty_redis_restarts_leak_no_descriptors_or_memory(
    tmp_path: Path, served_repo: FeatureRepo
) -> None:
    redis = start_redis(tmp_path)
    try:
        materialize_into(served_repo, redis.url)
        with (
            ferry_serve(redis.url, tmp_path / "serve.log", "--store-timeout-ms", "300") as (
                process,
                target,
            ),
            FerryClient(target, timeout_s=1, retry=RetryPolicy(attempts=1)) as client,
        ):
            lookup_until_served(client, 5)
            samples = []
            for _ in range(20):
                redis.kill()
                with pytest.raises(RpcError):
                    client.get_online_features(entities=ENTITIES, feature_service="fraud_v1")
                redis = start_redis(tmp_path, port=redis.port)
                lookup_until_served(client, 10)
                samples.append((process.num_fds(), process.memory_info().rss))
        fds = [fd for fd, _ in samples]
        rss = [r for _, r in samples]
        # After the first few restarts (lazy imports, pools reaching size) nothing grows.
        assert max(fds[3:]) <= fds[2] + 2, fds
        assert max(rss[3:]) - rss[2] < 20 * 2**20, rss
    finally:
        redis.stop()


def test_memory_is_flat_under_a_bounded_load(tmp_path: Path, served_repo: FeatureRepo) -> None:
    store = f"sqlite:///{tmp_path / 'online.db'}"
    materialize_into(served_repo, store)
    log = tmp_path / "serve.log"
    rss = []
    with (
        ferry_serve(store, log, "--metrics-port", "0") as (process, target),
        FerryClient(target, timeout_s=5) as client,
    ):
        for round_ in range(12):  # 12 x 400 calls of 10 rows: bounded in count
            users = [(round_ * 400 + i) % 2500 + 1 for i in range(10)]
            merchants = [f"m{u % 200 + 1:07d}" for u in users]
            for _ in range(400):
                client.get_online_features(
                    entities={"user_id": users, "merchant_id": merchants},
                    feature_service="fraud_v1",
                )
            rss.append(process.memory_info().rss)
    warm = rss[3]
    assert max(rss[4:]) - warm < 10 * 2**20, [r // 2**20 for r in rss]


def test_sighup_with_broken_files_keeps_the_certificate_and_grants(
    tmp_path: Path, served_repo: FeatureRepo
) -> None:
    store = f"sqlite:///{tmp_path / 'online.db'}"
    materialize_into(served_repo, store)
    ca = Authority(tmp_path / "ca")
    pem = ca.issue("ferry-server")
    cert, key, access = tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "access.yaml"
    shutil.copy(pem.cert, cert)
    shutil.copy(pem.key, key)
    token = "endurance-token-42"
    access.write_text(
        "callers:\n  - name: t\n"
        f"    token_sha256: {hashlib.sha256(token.encode()).hexdigest()}\n"
        '    allow: ["*"]\n'
    )
    flags = ["--tls-cert", str(cert), "--tls-key", str(key), "--access-file", str(access)]
    with ferry_serve(store, tmp_path / "serve.log", *flags) as (process, target):
        tls = ClientTls(ca_file=ca.ca_file)

        def served(with_token: str | None) -> None:
            with FerryClient(target, tls=tls, token=with_token, timeout_s=3) as client:
                client.get_online_features(entities=ENTITIES, feature_service="fraud_v1")

        served(token)
        cert.write_text("garbage")
        access.write_text("callers: [oops")
        process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        served(token)  # a new connection: the old certificate, the old grants
        with pytest.raises(UnauthenticatedError):
            served(None)
    log = (tmp_path / "serve.log").read_text()
    assert "TLS reload rejected" in log
    assert "access file reload rejected" in log

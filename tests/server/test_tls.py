"""TLS and mTLS over real channels: the right CA and name pass; a wrong CA, a wrong name,
plaintext, a missing, expired or foreign client certificate fail; certificates rotate on
reload, and a bad set is refused while the old one goes on serving."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ferry.cli.compose import FeaturesConfig, open_features
from ferry.client import AsyncFerryClient, ClientTls, UnavailableError
from ferry.core import FerryError
from ferry.server import FerryServer, ServerConfig, TlsFiles
from tests.certs import Authority
from tests.e2e.fraud import SAMPLE_REPO
from tests.server.conftest import start_server

ENTITIES = {"user_id": [1], "merchant_id": ["m0000001"]}


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path / "ca")


async def serving(store: str, files: TlsFiles) -> FerryServer:
    return await start_server(store, tls=files)


async def reads(port: int, tls: ClientTls | None, timeout_s: float = 2.0) -> bool:
    """Whether a lookup over this TLS setting gets an answer (UNAVAILABLE: it does not)."""
    async with AsyncFerryClient(f"127.0.0.1:{port}", tls=tls, timeout_s=timeout_s) as client:
        try:
            await client.get_online_features(entities=ENTITIES, feature_service="fraud_v1")
        except UnavailableError:
            return False
    return True


@pytest.fixture
async def tls_server(sqlite_store: str, ca: Authority) -> AsyncIterator[FerryServer]:
    pem = ca.issue("ferry-server", dns=("localhost", "ferry.internal"))
    server = await serving(sqlite_store, TlsFiles(pem.cert, pem.key))
    yield server
    await server.stop(0)


async def test_tls_needs_the_right_ca_and_name(
    tls_server: FerryServer, ca: Authority, tmp_path: Path
) -> None:
    port = tls_server.port
    assert await reads(port, ClientTls(ca_file=ca.ca_file))
    assert await reads(port, ClientTls(ca_file=ca.ca_file, server_name="ferry.internal"))
    assert not await reads(port, ClientTls(ca_file=ca.ca_file, server_name="elsewhere.test"))
    assert not await reads(port, ClientTls(ca_file=Authority(tmp_path / "other").ca_file))
    assert not await reads(port, None)  # plaintext to a TLS port


async def test_mtls_requires_a_valid_client_certificate(
    sqlite_store: str, ca: Authority, tmp_path: Path
) -> None:
    pem = ca.issue("ferry-server")
    server = await serving(sqlite_store, TlsFiles(pem.cert, pem.key, client_ca_file=ca.ca_file))
    try:
        good = ca.issue("scoring-service", client=True)
        expired = ca.issue("old-job", client=True, expired=True)
        foreign = Authority(tmp_path / "foreign").issue("intruder", client=True)

        def with_cert(cert: str | None, key: str | None) -> ClientTls:
            return ClientTls(ca_file=ca.ca_file, cert_file=cert, key_file=key)

        assert await reads(server.port, with_cert(good.cert, good.key))
        assert not await reads(server.port, with_cert(None, None))
        assert not await reads(server.port, with_cert(expired.cert, expired.key))
        assert not await reads(server.port, with_cert(foreign.cert, foreign.key))
    finally:
        await server.stop(0)


async def test_certificates_rotate_on_reload_and_a_bad_set_is_refused(
    sqlite_store: str, ca: Authority, tmp_path: Path
) -> None:
    first = ca.issue("ferry-server")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    shutil.copy(first.cert, cert)
    shutil.copy(first.key, key)
    server = await serving(sqlite_store, TlsFiles(str(cert), str(key)))
    try:
        assert await reads(server.port, ClientTls(ca_file=ca.ca_file))
        cert.write_text("not a certificate")
        assert server.reload() is False  # logged, and the old certificate goes on serving
        assert await reads(server.port, ClientTls(ca_file=ca.ca_file))

        renewed_by = Authority(tmp_path / "next")
        renewed = renewed_by.issue("ferry-server")
        shutil.copy(renewed.cert, cert)
        shutil.copy(renewed.key, key)
        assert server.reload() is True
        assert await reads(server.port, ClientTls(ca_file=renewed_by.ca_file))
        assert not await reads(server.port, ClientTls(ca_file=ca.ca_file))
    finally:
        await server.stop(0)


async def test_a_bad_certificate_set_is_refused_at_start(sqlite_store: str, ca: Authority) -> None:
    one, other = ca.issue("a"), ca.issue("b")
    with pytest.raises(FerryError, match="cannot use the TLS files"):
        await serving(sqlite_store, TlsFiles(one.cert, other.key))  # a key of another cert


async def test_plaintext_is_refused_off_loopback_unless_asked(sqlite_store: str) -> None:
    # Built, never started: tests listen on loopback only.
    features = open_features(FeaturesConfig(str(SAMPLE_REPO), sqlite_store))
    try:
        with pytest.raises(FerryError, match=r"refusing to serve plaintext on 0\.0\.0\.0"):
            FerryServer(ServerConfig(host="0.0.0.0"), features=features)
        allowed = FerryServer(ServerConfig(host="0.0.0.0", insecure=True), features=features)
        assert allowed.tls is None
        assert FerryServer(ServerConfig(host="::1"), features=features).tls is None
    finally:
        await features.store.close()


def test_serve_and_get_over_tls_through_the_cli(sqlite_store: str, ca: Authority) -> None:
    pem = ca.issue("ferry-server")
    ferry = [sys.executable, "-m", "ferry.cli.main"]
    tls = ["--tls-cert", pem.cert, "--tls-key", pem.key]
    server = subprocess.Popen(
        [*ferry, "serve", str(SAMPLE_REPO), "--online-store", sqlite_store, "--port", "0", *tls],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        target = json.loads(server.stdout.readline())["address"]
        get = [*ferry, "get", "--target", target, "--features", "user_stats:txn_count_7d"]
        get += ["--entity", "user_id=1", "--json", "--timeout-s", "2"]
        done = subprocess.run([*get, "--tls-ca", ca.ca_file], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["user_id"] == 1
        plaintext = subprocess.run(get, capture_output=True, text=True)
        assert plaintext.returncode == 1
        assert "UNAVAILABLE" in plaintext.stderr or "unavailable" in plaintext.stderr.lower()
        health = [*ferry, "health", "--target", target, "--timeout-s", "2"]
        healthy = subprocess.run([*health, "--tls-ca", ca.ca_file], capture_output=True, text=True)
        assert (healthy.returncode, healthy.stdout.strip()) == (0, "SERVING"), healthy.stderr
        unreachable = subprocess.run(health, capture_output=True, text=True)  # plaintext
        assert unreachable.returncode == 1
        assert "UNAVAILABLE" in unreachable.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()

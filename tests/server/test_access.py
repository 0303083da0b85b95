"""Bearer tokens and mTLS identities with per-view permissions, over real TLS channels:
UNAUTHENTICATED without a known caller, PERMISSION_DENIED naming the permission and the
resource (never the token), health and reflection open, grants re-read on reload."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ferry.client import (
    AsyncFerryClient,
    ClientTls,
    Lookup,
    PermissionDeniedError,
    UnauthenticatedError,
)
from ferry.core import FerryError
from ferry.server import FerryServer, TlsFiles
from ferry.server.access import Access, Caller
from tests.certs import Authority
from tests.server.conftest import start_server

SCORER, PIPELINE = "scorer-token-1f2e3d", "pipeline-token-9a8b7c"
ENTITIES = {"user_id": [1], "merchant_id": ["m0000001"]}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def access_file(path: Path, scorer: str = SCORER) -> str:
    path.write_text(
        f"""
callers:
  - name: scoring-service
    token_sha256: {sha(scorer)}
    allow: ["read:service/fraud_*", "read:registry"]
  - name: feature-pipeline
    token_sha256: {sha(PIPELINE)}
    allow: ["push:view/user_stats", "read:view/user_stats"]
  - name: nightly-job
    tls_identity: CN=nightly-job
    allow: ["read:view/*"]
"""
    )
    return str(path)


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path / "ca")


@pytest.fixture
async def secured(sqlite_store: str, ca: Authority, tmp_path: Path) -> AsyncIterator[FerryServer]:
    """TLS with optional client certificates (mTLS identities), and the access file."""
    pem = ca.issue("ferry-server")
    server = await start_server(
        sqlite_store,
        tls=TlsFiles(pem.cert, pem.key),
        access_file=access_file(tmp_path / "access.yaml"),
    )
    yield server
    await server.stop(0)


def client(server: FerryServer, ca: Authority, token: str | None = None) -> AsyncFerryClient:
    return AsyncFerryClient(
        f"127.0.0.1:{server.port}", tls=ClientTls(ca_file=ca.ca_file), token=token, timeout_s=5
    )


async def test_no_token_or_an_unknown_one_is_unauthenticated(
    secured: FerryServer, ca: Authority
) -> None:
    for token, reason in ((None, "MISSING_CREDENTIALS"), ("guess", "UNKNOWN_TOKEN")):
        async with client(secured, ca, token) as anonymous:
            with pytest.raises(UnauthenticatedError) as caught:
                await anonymous.get_online_features(entities=ENTITIES, feature_service="fraud_v1")
        assert caught.value.reason == reason


async def test_grants_decide_and_a_refusal_names_permission_and_resource(
    secured: FerryServer, ca: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with client(secured, ca, SCORER) as scorer:
        served = await scorer.get_online_features(entities=ENTITIES, feature_service="fraud_v1")
        assert served.row_count == 1
        with pytest.raises(PermissionDeniedError) as caught:
            await scorer.get_online_features(
                entities={"merchant_id": ["m0000001"]}, features=["merchant_stats:category"]
            )
        refused = caught.value
        assert str(refused) == "'scoring-service' is not granted read:view/merchant_stats"
        assert refused.metadata == {
            "caller": "scoring-service",
            "permission": "read:view",
            "resource": "merchant_stats",
        }
        with pytest.raises(PermissionDeniedError, match="push:view/user_stats"):
            await scorer.push("user_stats", [pushed_row()])
        # In a stream, a refused lookup is answered in place; the next one still is served.
        lookups = [
            Lookup({"merchant_id": ["m0000001"]}, features=["merchant_stats:category"]),
            Lookup(ENTITIES, feature_service="fraud_v1"),
        ]
        denied, answered = [r async for r in scorer.stream_online_features(lookups)]
        assert isinstance(denied, PermissionDeniedError)
        assert answered.row_count == 1  # type: ignore[union-attr]
    async with client(secured, ca, PIPELINE) as pipeline:
        assert (await pipeline.push("user_stats", [pushed_row()])).rows_written == 1
    assert SCORER not in caplog.text
    assert PIPELINE not in caplog.text


def pushed_row() -> dict[str, object]:
    return {
        "user_id": 424_242,
        "event_timestamp": datetime.now(UTC),
        "txn_count_7d": 1,
        "txn_sum_30d": None,
        "avg_txn_amount": None,
        "last_country": None,
        "is_premium": None,
        "risk_embedding": None,
    }


async def test_health_and_reflection_stay_open(secured: FerryServer, ca: Authority) -> None:
    credentials = grpc.ssl_channel_credentials(ca.cert_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{secured.port}", credentials) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in reflect.ServerReflectionInfo(iter([request]), timeout=5):
            names = {s.name for s in reply.list_services_response.service}
            assert "ferry.api.serving.v1.ServingService" in names
            break


async def test_a_revoked_token_fails_after_reload_and_a_bad_file_keeps_the_grants(
    secured: FerryServer, ca: Authority, tmp_path: Path
) -> None:
    path = tmp_path / "access.yaml"
    path.write_text("callers: [{name: x, token_sha256: not-a-hash, allow: []}]")
    assert secured.reload() is False
    async with client(secured, ca, SCORER) as scorer:
        await scorer.get_online_features(entities=ENTITIES, feature_service="fraud_v1")
    access_file(path, scorer="the-rotated-token")
    assert secured.reload() is True
    async with client(secured, ca, SCORER) as revoked:
        with pytest.raises(UnauthenticatedError):
            await revoked.get_online_features(entities=ENTITIES, feature_service="fraud_v1")
    async with client(secured, ca, "the-rotated-token") as rotated:
        await rotated.get_online_features(entities=ENTITIES, feature_service="fraud_v1")


async def test_an_mtls_identity_is_a_caller(
    sqlite_store: str, ca: Authority, tmp_path: Path
) -> None:
    pem = ca.issue("ferry-server")
    server = await start_server(
        sqlite_store,
        tls=TlsFiles(pem.cert, pem.key, client_ca_file=ca.ca_file),
        access_file=access_file(tmp_path / "access.yaml"),
    )
    try:
        for name, allowed in (("nightly-job", True), ("someone-else", False)):
            cert = ca.issue(name, client=True)
            tls = ClientTls(ca_file=ca.ca_file, cert_file=cert.cert, key_file=cert.key)
            async with AsyncFerryClient(f"127.0.0.1:{server.port}", tls=tls) as job:
                call = job.get_online_features(
                    entities={"merchant_id": ["m0000001"]}, features=["merchant_stats:category"]
                )
                if allowed:
                    assert (await call).row_count == 1
                else:
                    with pytest.raises(UnauthenticatedError):
                        await call
    finally:
        await server.stop(0)


def test_grants_match_with_wildcards() -> None:
    caller = Caller("c", ("read:service/fraud_*", "read:registry", "push:view/user_*"))
    assert caller.may("read", "service", "fraud_v2")
    assert not caller.may("read", "service", "churn_v1")
    assert caller.may("read", "registry", "any-model")
    assert caller.may("push", "view", "user_stats")
    assert not caller.may("read", "view", "user_stats")  # push does not grant read
    assert Caller("admin", ("*",)).may("push", "view", "anything")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("callers: {}", "expected a 'callers' list"),
        ("callers: [{name: a, token_sha256: abc, allow: []}]", "must be 64 hex digits"),
        ("callers: [{name: a, allow: []}]", "exactly one of token_sha256 and tls_identity"),
        (f"callers: [{{name: a, token_sha256: {'a' * 64}, allow: [write:all]}}]", "'allow'"),
        (f"callers: [{{name: a, token: x, token_sha256: {'a' * 64}}}]", "unknown field(s) token"),
        (
            f"callers: [{{name: a, token_sha256: {'a' * 64}}}, {{name: a, tls_identity: CN=a}}]",
            "callers[1]: 'name' must be a unique",
        ),
    ],
)
def test_a_bad_access_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "access.yaml"
    path.write_text(text)
    with pytest.raises(FerryError) as caught:
        Access(str(path))
    assert message in str(caught.value)
    assert str(path) in str(caught.value)

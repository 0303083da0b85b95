"""The load generator reaches a server with mTLS and tokens: with the CA, a client
certificate and a granted token every call is served; with an unknown token every one is
UNAUTHENTICATED."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ferry.api.serving.v1 import serving_pb2
from ferry.core import FeatureRepo
from ferry.server import FerryServer, TlsFiles
from tests.certs import Authority
from tests.server.conftest import materialize_into, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))
import loadgen

TOKEN = "loadgen-token-7"
METHOD = "/ferry.api.serving.v1.ServingService/GetOnlineFeatures"


@pytest.fixture
async def secured(
    served_repo: FeatureRepo, tmp_path: Path
) -> AsyncIterator[tuple[FerryServer, Authority]]:
    store = f"sqlite:///{tmp_path / 'online.db'}"
    await asyncio.to_thread(materialize_into, served_repo, store)
    ca = Authority(tmp_path / "ca")
    pem = ca.issue("ferry-server")
    access = tmp_path / "access.yaml"
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    access.write_text(f'callers: [{{name: load, token_sha256: {digest}, allow: ["*"]}}]')
    tls = TlsFiles(pem.cert, pem.key, client_ca_file=ca.ca_file)  # mTLS: a certificate needed
    server = await start_server(store, tls=tls, access_file=str(access))
    yield server, ca
    await server.stop(0)


def payload() -> bytes:
    request = serving_pb2.GetOnlineFeaturesRequest(feature_service="fraud_v1")
    request.entities["user_id"].int64_values.values.append(1)
    request.entities["merchant_id"].string_values.values.append("m0000001")
    return request.SerializeToString()


async def test_loadgen_over_tls_with_a_token(secured: tuple[FerryServer, Authority]) -> None:
    server, ca = secured
    target = f"127.0.0.1:{server.port}"
    client = ca.issue("load-generator", client=True)
    for token, served in ((TOKEN, True), ("not-it", False)):
        settings = loadgen.Settings(
            seconds=0.3,
            processes=1,
            concurrency=2,
            warmup_s=0,
            tls_ca=ca.ca_file,
            tls_cert=client.cert,
            tls_key=client.key,
            token=token,
        )
        # In a thread: the load runs in its own processes, against this test's event loop.
        result = await asyncio.to_thread(loadgen.run, target, METHOD, [payload()], settings)
        if served:
            assert result["calls"] > 0
            assert result["errors"] == {}
        else:
            assert result["calls"] == 0
            assert set(result["errors"]) == {"UNAUTHENTICATED"}

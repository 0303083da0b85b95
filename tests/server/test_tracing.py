"""OpenTelemetry spans of a real server, caught by an in-memory exporter: one SERVER span
per RPC continuing the caller's traceparent, the store call inside it, the gRPC code on
it, and errors marked as such. Health checks make no spans."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ferry.api.serving.v1 import serving_pb2
from ferry.cli.compose import FeaturesConfig, RegistryConfig, open_features, open_registry
from ferry.client import AsyncFerryClient
from ferry.core import FeatureRepo, FerryError
from ferry.server import FerryServer, ServerConfig
from ferry.server.metrics import MeteredStore, Metrics
from ferry.server.tracing import TracedStore, Tracing
from ferry.stores import open_online_store
from tests.e2e.fraud import SAMPLE_REPO
from tests.server.conftest import load_store
from tests.server.mlflow_fixtures import MODEL, register_versions

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
async def traced(
    served_repo: FeatureRepo, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[FerryServer, InMemorySpanExporter]]:
    store = f"sqlite:///{tmp_path_factory.mktemp('tracing') / 'online.db'}"
    await load_store(served_repo, store)
    exporter = InMemorySpanExporter()
    server = FerryServer(
        ServerConfig(port=0),
        features=open_features(FeaturesConfig(str(SAMPLE_REPO), store)),
        tracing=Tracing(exporter),
    )
    await server.start()
    yield server, exporter
    await server.stop(0)


async def test_rpc_and_store_spans_continue_the_callers_trace(
    traced: tuple[FerryServer, InMemorySpanExporter],
) -> None:
    server, exporter = traced
    request = serving_pb2.GetOnlineFeaturesRequest(feature_service="fraud_v1")
    request.entities["user_id"].int64_values.values.append(1)
    request.entities["merchant_id"].string_values.values.append("m0000001")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(
            "/ferry.api.serving.v1.ServingService/GetOnlineFeatures",
            request_serializer=serving_pb2.GetOnlineFeaturesRequest.SerializeToString,
            response_deserializer=serving_pb2.GetOnlineFeaturesResponse.FromString,
        )
        await call(request, metadata=(("traceparent", PARENT),), timeout=5)
        request.feature_service = "nope"
        with pytest.raises(grpc.aio.AioRpcError):
            await call(request, timeout=5)
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    spans = exporter.get_finished_spans()
    rpcs = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [s.name for s in rpcs] == ["ferry.api.serving.v1.ServingService/GetOnlineFeatures"] * 2
    good, bad = rpcs
    assert f"{good.context.trace_id:032x}" == TRACE_ID  # the caller's trace, continued
    assert good.attributes["rpc.grpc.status_code"] == 0
    assert good.status.status_code is StatusCode.UNSET
    (read,) = [s for s in spans if s.name == "store.read"]
    assert read.parent is not None
    assert read.parent.span_id == good.context.span_id
    assert read.attributes["db.system"] == "sqlite"
    assert bad.status.status_code is StatusCode.ERROR
    assert bad.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert f"{bad.context.trace_id:032x}" != TRACE_ID  # no traceparent: a new trace


async def test_a_registry_resolution_is_a_span_of_its_rpc(
    served_repo: FeatureRepo, sqlite_registry: str, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'online.db'}"
    await load_store(served_repo, store)
    client = register_versions(sqlite_registry)
    client.set_registered_model_alias(MODEL, "champion", "1")
    exporter = InMemorySpanExporter()
    server = FerryServer(
        ServerConfig(port=0),
        features=open_features(FeaturesConfig(str(SAMPLE_REPO), store)),
        registry=open_registry(RegistryConfig(sqlite_registry)),
        tracing=Tracing(exporter),
    )
    await server.start()
    try:
        async with AsyncFerryClient(f"127.0.0.1:{server.port}", timeout_s=10) as ferry:
            await ferry.get_model_features(
                MODEL, alias="champion", entities={"user_id": [1], "merchant_id": ["m0000001"]}
            )
    finally:
        await server.stop(0)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    rpc = spans["ferry.api.serving.v1.ServingService/GetModelFeatures"]
    for child in ("registry.resolve", "store.read"):
        assert spans[child].parent is not None
        assert spans[child].parent.span_id == rpc.context.span_id, child
    assert spans["registry.resolve"].attributes["ferry.model"] == MODEL


def test_tracing_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import now fails
    with pytest.raises(FerryError, match=r"ferry-features\[tracing\]"):
        Tracing()


async def test_stores_wrapped_twice_keep_their_backend_name(tmp_path: Path) -> None:
    store = open_online_store(f"sqlite:///{tmp_path / 'online.db'}")
    try:
        wrapped = TracedStore(MeteredStore(store, Metrics()), Tracing(InMemorySpanExporter()))  # type: ignore[arg-type]
        assert wrapped.backend == "sqlite"
    finally:
        await store.close()

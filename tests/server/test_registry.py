"""RegistryService and GetModelFeatures over MLflow: embedded sqlite and a real server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ferry.cli.compose import RegistryConfig, open_registry
from ferry.client import (
    AsyncFerryClient,
    FailedPreconditionError,
    InvalidArgumentError,
    ModelVersion,
    NotFoundError,
    RetryPolicy,
    UnimplementedError,
)
from ferry.client._errors import from_rpc_error
from ferry.core.errors import FerryError
from ferry.server import FerryServer, ServerConfig
from ferry.server.errors import RegistryError
from ferry.server.registry import WebhookReceiver, signature_ok
from tests.server.conftest import start_server
from tests.server.mlflow_fixtures import MODEL, MlflowServer, register_versions

ENTITIES = {"user_id": [1, 2, 424242], "merchant_id": ["m0000001", "m0000002", "m0000003"]}


@pytest.fixture
async def registry_server(
    loaded_store: str, sqlite_registry: str
) -> AsyncIterator[tuple[FerryServer, Any]]:
    client = register_versions(sqlite_registry)
    client.set_registered_model_alias(MODEL, "champion", "1")
    client.set_registered_model_alias(MODEL, "unbound", "2")
    with pytest.warns(FutureWarning):
        client.transition_model_version_stage(MODEL, "1", "Production")
    # The default poll interval (1 s): changes must reach watchers within 2 s with it.
    server = await start_server(loaded_store, registry=RegistryConfig(sqlite_registry))
    yield server, client
    await server.stop(0)


async def test_resolution_by_alias_stage_and_number(
    registry_server: tuple[FerryServer, Any],
) -> None:
    server, _ = registry_server
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        by_alias = await client.get_model_version(MODEL, alias="champion")
        by_stage = await client.get_model_version(MODEL, stage="production")
        by_number = await client.get_model_version(MODEL, version=2)
    assert by_alias.version == by_stage.version == 1
    assert by_alias.aliases == ("champion",)
    assert by_alias.stage == "Production"
    assert by_alias.feature_service == "fraud_v1"
    assert by_alias.source == f"s3://ferry-tests/models/{MODEL}"
    assert by_alias.creation_micros > 0
    assert not by_alias.stale
    assert (by_number.version, by_number.feature_service) == (2, "")


@pytest.mark.parametrize(
    ("model", "selector", "error", "reason"),
    [
        ("nope", {"alias": "champion"}, NotFoundError, "UNKNOWN_MODEL"),
        (MODEL, {"alias": "nobody"}, NotFoundError, "UNKNOWN_MODEL"),
        (MODEL, {"stage": "Staging"}, NotFoundError, "UNKNOWN_MODEL"),
        (MODEL, {"version": 99}, NotFoundError, "UNKNOWN_MODEL"),
        (MODEL, {"version": 0}, InvalidArgumentError, "MISSING_SELECTOR"),
        ("", {"alias": "champion"}, InvalidArgumentError, "MISSING_MODEL_NAME"),
    ],
)
async def test_unknown_models_and_bad_selectors(
    registry_server: tuple[FerryServer, Any],
    model: str,
    selector: dict[str, Any],
    error: type[Exception],
    reason: str,
) -> None:
    server, _ = registry_server
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(error) as caught:
            await client.get_model_version(model, **selector)
    assert caught.value.reason == reason  # type: ignore[attr-defined]


async def test_get_model_features_equals_get_online_features(
    registry_server: tuple[FerryServer, Any],
) -> None:
    server, _ = registry_server
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        version, features = await client.get_model_features(
            MODEL, alias="champion", entities=ENTITIES
        )
        direct = await client.get_online_features(feature_service="fraud_v1", entities=ENTITIES)
        with pytest.raises(FailedPreconditionError) as caught:
            await client.get_model_features(MODEL, alias="unbound", entities=ENTITIES)
    assert "bind_feature_service(model, version, service)" in str(caught.value)  # the fix
    assert version.version == 1
    assert features.names == direct.names
    for mine, theirs in zip(features, direct, strict=True):
        assert (mine.values, mine.statuses, mine.event_timestamps) == (
            theirs.values,
            theirs.statuses,
            theirs.event_timestamps,
        )
    assert "model 'fraud-detector' version 2 has no 'ferry.feature_service' tag" in str(
        caught.value
    )


async def next_version(watch: AsyncIterator[ModelVersion], within_s: float) -> ModelVersion:
    return await asyncio.wait_for(anext(watch), within_s)


async def until_version(
    watch: AsyncIterator[ModelVersion], number: int, within_s: float
) -> ModelVersion:
    """The first message naming version ``number``; a watcher also hears of other changes
    of the version it follows (its aliases, tags, stage)."""

    async def scan() -> ModelVersion:
        async for version in watch:
            if version.version == number:
                return version
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(scan(), within_s)


async def test_watchers_see_alias_moves_and_stage_transitions_by_polling(
    registry_server: tuple[FerryServer, Any],
) -> None:
    server, mlflow = registry_server
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        by_alias = client.watch_model_version(MODEL, alias="champion")
        by_stage = client.watch_model_version(MODEL, stage="Production")
        assert (await next_version(by_alias, 5)).version == 1
        assert (await next_version(by_stage, 5)).version == 1
        started = time.monotonic()
        mlflow.set_registered_model_alias(MODEL, "champion", "2")
        assert (await until_version(by_alias, 2, 2)).version == 2
        assert time.monotonic() - started < 2
        with pytest.warns(FutureWarning):
            mlflow.transition_model_version_stage(MODEL, "2", "Production")
        assert (await until_version(by_stage, 2, 2)).stage == "Production"
        await by_alias.aclose()
        await by_stage.aclose()


async def test_a_server_without_registry_says_so(server: FerryServer) -> None:
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(UnimplementedError, match="without a model registry") as caught:
            await client.get_model_features(MODEL, alias="champion", entities=ENTITIES)
    assert caught.value.code is grpc.StatusCode.UNIMPLEMENTED


# -- a real mlflow server: webhooks and outages -------------------------------------------


def sign(secret: str, delivery: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(
        secret.encode(), f"{delivery}.{timestamp}.".encode() + body, hashlib.sha256
    ).digest()
    return "v1," + base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("nope://ferry:registry-pw@host", "unsupported URI 'nope://ferry:***@host'"),
        ("http://ferry:registry-pw@[::1", "Invalid IPv6 URL"),
    ],
)
def test_a_registry_uri_mlflow_cannot_use_is_one_clear_error(uri: str, said: str) -> None:
    """They were MLflow's exception (or a ValueError) as a traceback at start."""
    with pytest.raises(RegistryError) as caught:
        open_registry(RegistryConfig(uri, poll_interval_s=1.0))
    assert said in str(caught.value)
    assert str(caught.value).startswith("model registry ")
    assert "registry-pw" not in str(caught.value)


async def test_a_webhook_receiver_that_cannot_listen_stops_the_start(
    loaded_store: str, tmp_path: Path
) -> None:
    """It was a traceback and 'Event loop is closed', with gRPC already listening."""
    config = RegistryConfig(
        f"sqlite:///{tmp_path / 'registry.db'}",
        webhook_host="nonsense.invalid",
        webhook_port=0,
        webhook_secret="s",
    )
    with pytest.raises(FerryError, match=r"cannot run the webhook receiver on nonsense\.invalid:0"):
        await start_server(loaded_store, registry=config)


def test_signature_check() -> None:
    body = b'{"data": {"name": "m"}}'
    now = str(int(time.time()))
    good = sign("s3cret", "d1", now, body)
    assert signature_ok("s3cret", "d1", now, body, good)
    assert not signature_ok("other", "d1", now, body, good)
    assert not signature_ok("s3cret", "d2", now, body, good)
    assert not signature_ok("s3cret", "d1", now, body + b" ", good)
    old = str(int(time.time()) - 3600)
    assert not signature_ok("s3cret", "d1", old, body, sign("s3cret", "d1", old, body))
    assert not signature_ok("s3cret", "d1", now, body, "v2," + good[3:])


async def test_alias_moves_reach_watchers_by_webhook_and_outages_serve_the_last_state(
    mlflow_server: MlflowServer, loaded_store: str
) -> None:
    name = f"model-{uuid.uuid4().hex[:8]}"
    mlflow = register_versions(mlflow_server.uri, name, ("fraud_v1", "fraud_v2"))
    mlflow.set_registered_model_alias(name, "champion", "1")
    secret = "webhook-s3cret"
    server = await start_server(
        loaded_store,
        registry=RegistryConfig(
            mlflow_server.uri, poll_interval_s=30, webhook_port=0, webhook_secret=secret
        ),
    )
    assert server.webhooks is not None
    url = f"http://127.0.0.1:{server.webhooks.port}/"
    webhook = await asyncio.to_thread(
        mlflow.create_webhook,
        name=f"ferry-{name}",
        url=url,
        secret=secret,
        events=["model_version_alias.created", "model_version.created"],
    )
    await asyncio.sleep(1.2)  # past MLflow's webhook-list cache (MLFLOW_WEBHOOK_CACHE_TTL=1)
    try:
        async with AsyncFerryClient(
            f"127.0.0.1:{server.port}", retry=RetryPolicy(attempts=1), timeout_s=5
        ) as client:
            watch = client.watch_model_version(name, alias="champion")
            assert (await next_version(watch, 5)).version == 1
            started = time.monotonic()
            # In a thread: MLflow may deliver the webhook before it answers this call, and
            # the receiver runs on this event loop.
            await asyncio.to_thread(mlflow.set_registered_model_alias, name, "champion", "2")
            moved = await until_version(watch, 2, 0.5)  # polling is 30 s: only webhooks can
            assert moved.version == 2
            assert moved.feature_service == "fraud_v2"
            assert time.monotonic() - started < 0.5 + 0.5  # plus the MLflow call itself

            # A forged delivery is refused and changes nothing.
            body = json.dumps(
                {
                    "entity": "model_version_alias",
                    "action": "created",
                    "data": {"name": name, "alias": "champion", "version": "1"},
                }
            )
            request = urllib.request.Request(
                url,
                data=body.encode(),
                method="POST",
                headers={
                    "X-MLflow-Delivery-Id": "forged",
                    "X-MLflow-Timestamp": str(int(time.time())),
                    "X-MLflow-Signature": sign(
                        "wrong", "forged", str(int(time.time())), body.encode()
                    ),
                },
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                await asyncio.to_thread(urllib.request.urlopen, request, timeout=5)
            assert refused.value.code == 401
            refused.value.close()

            # MLflow frozen: the last known version is still served, marked stale.
            mlflow_server.pause()
            try:
                await server.registry.refresh(name)  # type: ignore[union-attr]
                stale = await client.get_model_version(name, alias="champion")
                assert (stale.version, stale.stale) == (2, True)
                version, features = await client.get_model_features(
                    name, alias="champion", entities=ENTITIES
                )
                assert version.version == 2
                assert features.row_count == 3
            finally:
                mlflow_server.resume()
            await server.registry.refresh(name)  # type: ignore[union-attr]
            fresh = await client.get_model_version(name, alias="champion")
            assert (fresh.version, fresh.stale) == (2, False)
            await watch.aclose()
    finally:
        await server.stop(0)
        # MLflow delivers every event to every webhook it knows: one left pointing at this
        # stopped server delays the deliveries of the next test's (a third store variant
        # missed its 0.5 s).
        await asyncio.to_thread(mlflow.delete_webhook, webhook.webhook_id)


def test_mlflow_is_not_imported_without_a_registry() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, ferry.cli.main, ferry.server, ferry.materializer, ferry.client; "
        "print('mlflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


async def test_the_webhook_receiver_refuses_odd_bodies_and_ignores_replays() -> None:
    changed: list[str] = []

    async def on_change(name: str) -> None:
        changed.append(name)

    receiver = WebhookReceiver("127.0.0.1", 0, "s3cret", on_change)
    port = await receiver.start()

    def post(delivery: str, body: bytes) -> int:
        now = str(int(time.time()))
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=body,
            method="POST",
            headers={
                "X-MLflow-Delivery-Id": delivery,
                "X-MLflow-Timestamp": now,
                "X-MLflow-Signature": sign("s3cret", delivery, now, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as refused:
            refused.close()
            return int(refused.code)

    try:
        assert await asyncio.to_thread(post, "d-list", b"[1, 2]") == 400
        assert await asyncio.to_thread(post, "d-null", b"null") == 400
        event = b'{"entity": "model_version_alias", "data": {"name": "m1"}}'
        assert await asyncio.to_thread(post, "d-1", event) == 200
        assert await asyncio.to_thread(post, "d-1", event) == 200  # the same delivery again
        assert changed == ["m1"]
    finally:
        await receiver.stop()


@pytest.mark.parametrize(
    "method", ["GetModelFeatures", "GetOnlineFeatures", "StreamOnlineFeatures"]
)
async def test_a_registry_only_server_says_why_it_serves_no_features(
    sqlite_registry: str, method: str
) -> None:
    server = FerryServer(
        ServerConfig(port=0), registry=open_registry(RegistryConfig(sqlite_registry))
    )
    await server.start()
    path = f"/ferry.api.serving.v1.ServingService/{method}"

    async def call(channel: grpc.aio.Channel) -> None:
        if method != "StreamOnlineFeatures":
            await channel.unary_unary(path)(b"", timeout=5)
            return
        async for _ in channel.stream_stream(path)(iter([b""]), timeout=5):
            pass

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(channel)
    finally:
        await server.stop(0)
    error = from_rpc_error(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.UNIMPLEMENTED, "NOT_IMPLEMENTED")
    assert "serves the model registry only (--registry-only)" in str(error)

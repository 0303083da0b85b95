"""The Ferry clients: ``FerryClient`` (blocking) and ``AsyncFerryClient`` (asyncio).

Both share request building (``_requests``), response decoding (``_results``), error
mapping (``_errors``) and the retry policy (``_retry``); only the call itself differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

from ferry.api.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry.api.serving.v1 import serving_pb2, serving_pb2_grpc
from ferry.client._errors import from_rpc_error
from ferry.client._requests import (
    Columns,
    model_features_request,
    online_features_request,
    push_request,
)
from ferry.client._results import OnlineFeatures, decode_online_features
from ferry.client._retry import DEFAULT_RETRY, NO_RETRY, RetryPolicy, retryable
from ferry.client.registry import ModelVersion, selector

_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # gRPC waits 1 s before reconnecting by default, so retries within a call's timeout of
    # a few ms would all fail fast; reconnect sooner, backing off to 2 s.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class PushResult:
    """Outcome of a push: rows the store took, and rows it skipped as not newer."""

    def __init__(self, response: serving_pb2.PushFeaturesResponse) -> None:
        self.rows_written = int(response.rows_written)
        self.rows_skipped_not_newer = int(response.rows_skipped_not_newer)

    def __repr__(self) -> str:
        return f"PushResult(written={self.rows_written}, skipped={self.rows_skipped_not_newer})"


class FerryClient:
    """Blocking client of a Ferry server.

    Args:
        target: ``host:port``.
        timeout_s: Default per-call timeout, in seconds. Default 1.
        retry: Policy for reads on UNAVAILABLE. Pushes are never retried.
    """

    def __init__(
        self, target: str, *, timeout_s: float = 1.0, retry: RetryPolicy = DEFAULT_RETRY
    ) -> None:
        self._channel = grpc.insecure_channel(target, options=_OPTIONS)
        self._stub = serving_pb2_grpc.ServingServiceStub(self._channel)
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self.timeout_s = timeout_s
        self.retry = retry

    def get_online_features(
        self,
        *,
        entities: Columns,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        """Features of every entity row; ``entities`` maps join key -> values.

        Raises:
            RpcError: a subclass per status code (NotFoundError, InvalidArgumentError, ...).
        """
        request = online_features_request(features, feature_service, entities)
        response = self._call(self._stub.GetOnlineFeatures, request, timeout_s, self.retry)
        return decode_online_features(response)

    def get_model_features(
        self,
        model: str,
        *,
        entities: Columns,
        alias: str | None = None,
        stage: str | None = None,
        version: int | None = None,
        timeout_s: float | None = None,
    ) -> tuple[ModelVersion, OnlineFeatures]:
        """The model version a selector resolves to, and its feature service's features."""
        request = model_features_request(model, selector(alias, stage, version), entities)
        response = self._call(self._stub.GetModelFeatures, request, timeout_s, self.retry)
        return ModelVersion.from_message(response.model_version), decode_online_features(response)

    def get_model_version(
        self,
        model: str,
        *,
        alias: str | None = None,
        stage: str | None = None,
        version: int | None = None,
        timeout_s: float | None = None,
    ) -> ModelVersion:
        """The version a selector resolves to now (``stale`` if the registry is down)."""
        request = registry_pb2.GetModelVersionRequest(
            name=model, selector=selector(alias, stage, version)
        )
        response = self._call(self._registry.GetModelVersion, request, timeout_s, self.retry)
        return ModelVersion.from_message(response.model_version, response.stale)

    def push(
        self,
        view: str,
        rows: Columns | Sequence[Mapping[str, Any]],
        *,
        timeout_s: float | None = None,
    ) -> PushResult:
        """Write rows of one view through the timestamp-conditional writer."""
        return PushResult(
            self._call(self._stub.PushFeatures, push_request(view, rows), timeout_s, NO_RETRY)
        )

    def _call(self, method: Any, request: Any, timeout_s: float | None, retry: RetryPolicy) -> Any:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        pauses = retry.pauses()
        while True:
            try:
                return method(request, timeout=max(deadline - time.monotonic(), 0.0))
            except grpc.RpcError as err:
                pause = next(pauses, None) if retryable(err) else None
                if pause is None or time.monotonic() + pause >= deadline:
                    raise from_rpc_error(err) from err
                time.sleep(pause)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> FerryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncFerryClient:
    """asyncio client of a Ferry server; same arguments and results as ``FerryClient``."""

    def __init__(
        self, target: str, *, timeout_s: float = 1.0, retry: RetryPolicy = DEFAULT_RETRY
    ) -> None:
        self._channel = grpc.aio.insecure_channel(target, options=_OPTIONS)
        self._stub = serving_pb2_grpc.ServingServiceStub(self._channel)
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self.timeout_s = timeout_s
        self.retry = retry

    async def get_online_features(
        self,
        *,
        entities: Columns,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        """See ``FerryClient.get_online_features``."""
        request = online_features_request(features, feature_service, entities)
        response = await self._call(self._stub.GetOnlineFeatures, request, timeout_s, self.retry)
        return decode_online_features(response)

    async def get_model_features(
        self,
        model: str,
        *,
        entities: Columns,
        alias: str | None = None,
        stage: str | None = None,
        version: int | None = None,
        timeout_s: float | None = None,
    ) -> tuple[ModelVersion, OnlineFeatures]:
        """See ``FerryClient.get_model_features``."""
        request = model_features_request(model, selector(alias, stage, version), entities)
        response = await self._call(self._stub.GetModelFeatures, request, timeout_s, self.retry)
        return ModelVersion.from_message(response.model_version), decode_online_features(response)

    async def get_model_version(
        self,
        model: str,
        *,
        alias: str | None = None,
        stage: str | None = None,
        version: int | None = None,
        timeout_s: float | None = None,
    ) -> ModelVersion:
        """See ``FerryClient.get_model_version``."""
        request = registry_pb2.GetModelVersionRequest(
            name=model, selector=selector(alias, stage, version)
        )
        response = await self._call(self._registry.GetModelVersion, request, timeout_s, self.retry)
        return ModelVersion.from_message(response.model_version, response.stale)

    async def watch_model_version(
        self,
        model: str,
        *,
        alias: str | None = None,
        stage: str | None = None,
        version: int | None = None,
    ) -> AsyncIterator[ModelVersion]:
        """The version now, then each change, until the caller stops iterating."""
        request = registry_pb2.WatchModelVersionRequest(
            name=model, selector=selector(alias, stage, version)
        )
        stream = self._registry.WatchModelVersion(request)
        try:
            async for message in stream:
                yield ModelVersion.from_message(message.model_version, message.stale)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from err
        finally:
            stream.cancel()

    async def push(
        self,
        view: str,
        rows: Columns | Sequence[Mapping[str, Any]],
        *,
        timeout_s: float | None = None,
    ) -> PushResult:
        """See ``FerryClient.push``."""
        return PushResult(
            await self._call(self._stub.PushFeatures, push_request(view, rows), timeout_s, NO_RETRY)
        )

    async def _call(
        self, method: Any, request: Any, timeout_s: float | None, retry: RetryPolicy
    ) -> Any:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        pauses = retry.pauses()
        while True:
            try:
                return await method(request, timeout=max(deadline - time.monotonic(), 0.0))
            except grpc.aio.AioRpcError as err:
                pause = next(pauses, None) if retryable(err) else None
                if pause is None or time.monotonic() + pause >= deadline:
                    raise from_rpc_error(err) from err
                await asyncio.sleep(pause)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncFerryClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

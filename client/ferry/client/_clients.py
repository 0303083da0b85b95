"""The Ferry clients: ``FerryClient`` (blocking) and ``AsyncFerryClient`` (asyncio).

Both take their calls from ``_calls`` (request building, response decoding, whether to
retry), map errors with ``_errors`` and pause by ``_retry``; only sending differs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

from ferry.api.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry.api.serving.v1 import serving_pb2_grpc
from ferry.client import _calls as calls
from ferry.client._calls import Call, PushResult, T
from ferry.client._connection import ClientTls, call_metadata, open_channel
from ferry.client._errors import from_rpc_error
from ferry.client._requests import Columns
from ferry.client._results import OnlineFeatures
from ferry.client._retry import DEFAULT_RETRY, NO_RETRY, RetryPolicy, retryable
from ferry.client._streams import Lookup, LookupStream, StreamResult
from ferry.client.registry import ModelVersion, selector
from ferry.core.errors import InvalidValueError

_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # gRPC waits 1 s before reconnecting by default, so retries within a call's timeout of
    # a few ms would all fail fast; reconnect sooner, backing off to 2 s.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class FerryClient:
    """Blocking client of a Ferry server.

    Args:
        target: ``host:port``.
        timeout_s: Default per-call timeout, in seconds. Default 1.
        retry: Policy for reads on UNAVAILABLE. Pushes are never retried.
        tls: TLS (and mTLS) settings; None connects in plaintext.
        token: A bearer token sent with every call, for a server that checks tokens.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 1.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        tls: ClientTls | None = None,
        token: str | None = None,
    ) -> None:
        _check_timeout(timeout_s)
        self._metadata = call_metadata(token)
        self._channel = open_channel(target, _OPTIONS, tls, aio=False)
        self._methods = _methods(self._channel)
        self.timeout_s = timeout_s
        self.retry = retry

    def get_online_features(
        self,
        *,
        entities: Columns | None = None,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        timeout_s: float | None = None,
        entity_rows: Sequence[Mapping[str, Any]] | None = None,
    ) -> OnlineFeatures:
        """Features of every entity row.

        Args:
            entities: The entity rows as columns, in any shape: a dict of join key to a
                list, numpy array, pandas Series or pyarrow array; a pyarrow Table or
                RecordBatch; a pandas DataFrame; or a list of row dicts.
            entity_rows: Or, as in Feast, one dict per entity row.

        Raises:
            InvalidValueError: neither or both of ``entities`` and ``entity_rows``, or a
                column whose type cannot be told (named, with what it holds).
            RpcError: a subclass per status code (NotFoundError, InvalidArgumentError, ...).
        """
        call = calls.online_features(features, feature_service, entities, entity_rows)
        return self._run(call, timeout_s)

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
        call = calls.model_features(model, alias, stage, version, entities)
        return self._run(call, timeout_s)

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
        return self._run(calls.model_version(model, alias, stage, version), timeout_s)

    def push(
        self,
        view: str,
        rows: Columns | Sequence[Mapping[str, Any]],
        *,
        missing_features_are_null: bool = False,
        timeout_s: float | None = None,
    ) -> PushResult:
        """Write rows of one view through the timestamp-conditional writer.

        A pushed row replaces the stored row whole, so ``rows`` must give every feature of
        the view (None where a value is null); a push that leaves one out is refused with
        InvalidArgumentError (reason MISSING_FEATURES) unless ``missing_features_are_null``
        says to store the left-out features as null.
        """
        return self._run(calls.push(view, rows, missing_features_are_null), timeout_s)

    def stream_online_features(
        self, lookups: Iterable[Lookup], *, timeout_s: float | None = None
    ) -> Iterator[StreamResult]:
        """Many lookups over one stream: one result per lookup, in order, each the lookup's
        ``OnlineFeatures`` or its ``RpcError`` (returned, not raised; the stream goes on).
        Far cheaper per lookup for the server than ``get_online_features``.

        Args:
            lookups: Consumed as the stream goes (it may be a generator).
            timeout_s: Bound on the whole stream; None (the default) for none.

        Raises:
            RpcError: the stream itself failed (the server went away, the deadline passed).
        """
        stream = LookupStream()
        messages = (stream.request(lookup) for lookup in lookups)
        responses = self._methods["StreamOnlineFeatures"](
            messages, timeout=timeout_s, metadata=self._metadata
        )
        try:
            for response in responses:
                yield stream.result(response)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        finally:
            responses.cancel()

    def _run(self, call: Call[T], timeout_s: float | None) -> T:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        pauses = (self.retry if call.retry else NO_RETRY).pauses()
        while True:
            try:
                response = self._methods[call.method](
                    call.request,
                    timeout=max(deadline - time.monotonic(), 0.0),
                    metadata=self._metadata,
                )
                return call.decode(response)
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
        self,
        target: str,
        *,
        timeout_s: float = 1.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        tls: ClientTls | None = None,
        token: str | None = None,
    ) -> None:
        _check_timeout(timeout_s)
        self._metadata = call_metadata(token)
        self._channel = open_channel(target, _OPTIONS, tls, aio=True)
        self._methods = _methods(self._channel)
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self.timeout_s = timeout_s
        self.retry = retry

    async def get_online_features(
        self,
        *,
        entities: Columns | None = None,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        timeout_s: float | None = None,
        entity_rows: Sequence[Mapping[str, Any]] | None = None,
    ) -> OnlineFeatures:
        """See ``FerryClient.get_online_features``."""
        call = calls.online_features(features, feature_service, entities, entity_rows)
        return await self._run(call, timeout_s)

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
        call = calls.model_features(model, alias, stage, version, entities)
        return await self._run(call, timeout_s)

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
        return await self._run(calls.model_version(model, alias, stage, version), timeout_s)

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
        stream = self._registry.WatchModelVersion(request, metadata=self._metadata)
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
        missing_features_are_null: bool = False,
        timeout_s: float | None = None,
    ) -> PushResult:
        """See ``FerryClient.push``."""
        return await self._run(calls.push(view, rows, missing_features_are_null), timeout_s)

    async def stream_online_features(
        self,
        lookups: Iterable[Lookup] | AsyncIterable[Lookup],
        *,
        timeout_s: float | None = None,
    ) -> AsyncIterator[StreamResult]:
        """See ``FerryClient.stream_online_features``; ``lookups`` may also be an async
        iterable (a queue drained as requests arrive, say)."""
        stream = LookupStream()
        responses = self._methods["StreamOnlineFeatures"](
            stream.requests(lookups), timeout=timeout_s, metadata=self._metadata
        )
        try:
            async for response in responses:
                yield stream.result(response)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from err
        finally:
            responses.cancel()

    async def _run(self, call: Call[T], timeout_s: float | None) -> T:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        pauses = (self.retry if call.retry else NO_RETRY).pauses()
        while True:
            try:
                response = await self._methods[call.method](
                    call.request,
                    timeout=max(deadline - time.monotonic(), 0.0),
                    metadata=self._metadata,
                )
                return call.decode(response)
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


def _methods(channel: Any) -> dict[str, Any]:
    """The stub methods of both services, by RPC name (works for sync and aio channels)."""
    serving = serving_pb2_grpc.ServingServiceStub(channel)
    registry = registry_pb2_grpc.RegistryServiceStub(channel)
    return {
        "GetOnlineFeatures": serving.GetOnlineFeatures,
        "GetModelFeatures": serving.GetModelFeatures,
        "PushFeatures": serving.PushFeatures,
        "StreamOnlineFeatures": serving.StreamOnlineFeatures,
        "GetModelVersion": registry.GetModelVersion,
    }


def _check_timeout(timeout_s: float) -> None:
    """A default timeout every call would fail on (0, negative, nan) is refused up front."""
    if not (
        isinstance(timeout_s, int | float)
        and not isinstance(timeout_s, bool)
        and math.isfinite(timeout_s)
        and timeout_s > 0
    ):
        raise InvalidValueError(
            f"timeout_s must be a finite number of seconds above 0, got {timeout_s!r}"
        )

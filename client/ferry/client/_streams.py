"""StreamOnlineFeatures for both clients: lookups to stream messages, and each answer to
the lookup's features or its error (returned, not raised: the stream goes on)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

import grpc

from ferry.api.serving.v1 import serving_pb2
from ferry.client._errors import RpcError, error_of
from ferry.client._requests import Columns, online_features_request
from ferry.client._results import OnlineFeatures, decode_online_features

StreamResult = OnlineFeatures | RpcError
"""What a stream yields per lookup: its features, or the error a unary call would raise."""

_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class Lookup:
    """One lookup to stream: ``entities`` maps join key -> values; exactly one of
    ``features`` and ``feature_service``, as in ``get_online_features``."""

    entities: Columns
    features: Sequence[str] | None = None
    feature_service: str | None = None


def stream_request(lookup: Lookup) -> serving_pb2.StreamOnlineFeaturesRequest:
    """The stream message of one lookup (checked like a unary request)."""
    request = online_features_request(lookup.features, lookup.feature_service, lookup.entities)
    return serving_pb2.StreamOnlineFeaturesRequest(request=request)


async def stream_requests(
    lookups: Iterable[Lookup] | AsyncIterable[Lookup],
) -> AsyncIterator[serving_pb2.StreamOnlineFeaturesRequest]:
    """Stream messages of lookups that arrive over time (or are all known)."""
    if isinstance(lookups, AsyncIterable):
        async for lookup in lookups:
            yield stream_request(lookup)
    else:
        for lookup in lookups:
            yield stream_request(lookup)


def stream_result(response: serving_pb2.StreamOnlineFeaturesResponse) -> StreamResult:
    """One answer of the stream, decoded."""
    if response.HasField("error"):
        failure = response.error
        code = _CODES.get(failure.code, grpc.StatusCode.UNKNOWN)
        return error_of(code, failure.message, failure.reason, dict(failure.metadata))
    return decode_online_features(response.features)

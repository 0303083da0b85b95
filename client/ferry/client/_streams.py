"""StreamOnlineFeatures for both clients: lookups to stream messages, and each answer to
the lookup's features or its error (returned, not raised: the stream goes on)."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

import grpc

from ferry.api.serving.v1 import serving_pb2
from ferry.client._errors import RpcError, error_of
from ferry.client._requests import Columns, online_features_request
from ferry.client._results import EntityKeys, OnlineFeatures, decode_online_features

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


class LookupStream:
    """One stream's lookups and answers: each answer, which comes in lookup order, is
    decoded with the entity key columns of its lookup."""

    def __init__(self) -> None:
        self._keys: deque[EntityKeys] = deque()

    def request(self, lookup: Lookup) -> serving_pb2.StreamOnlineFeaturesRequest:
        """The stream message of one lookup (checked like a unary request)."""
        request, keys = online_features_request(
            lookup.features, lookup.feature_service, lookup.entities
        )
        self._keys.append(keys)
        return serving_pb2.StreamOnlineFeaturesRequest(request=request)

    async def requests(
        self, lookups: Iterable[Lookup] | AsyncIterable[Lookup]
    ) -> AsyncIterator[serving_pb2.StreamOnlineFeaturesRequest]:
        """Stream messages of lookups that arrive over time (or are all known)."""
        if isinstance(lookups, AsyncIterable):
            async for lookup in lookups:
                yield self.request(lookup)
        else:
            for lookup in lookups:
                yield self.request(lookup)

    def result(self, response: serving_pb2.StreamOnlineFeaturesResponse) -> StreamResult:
        """The next answer of the stream, decoded."""
        keys = self._keys.popleft()
        if response.HasField("error"):
            failure = response.error
            code = _CODES.get(failure.code, grpc.StatusCode.UNKNOWN)
            return error_of(code, failure.message, failure.reason, dict(failure.metadata))
        return decode_online_features(response.features, keys)

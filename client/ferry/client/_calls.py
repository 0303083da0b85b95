"""One description per RPC call, shared by the blocking and the asyncio client: which method,
with which request, decoded how, retried or not. The clients only send it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ferry.api.registry.v1 import registry_pb2
from ferry.api.serving.v1 import serving_pb2
from ferry.client._requests import (
    Columns,
    model_features_request,
    online_features_request,
    push_request,
)
from ferry.client._results import OnlineFeatures, decode_online_features
from ferry.client.registry import ModelVersion, selector
from ferry.core.errors import InvalidValueError

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """An RPC to make: ``method`` names the stub method, ``retry`` says whether UNAVAILABLE
    may be retried (reads only, AIP-194)."""

    method: str
    request: Any
    decode: Callable[[Any], T]
    retry: bool


class PushResult:
    """Outcome of a push: rows the store took, and rows it skipped as not newer."""

    def __init__(self, response: serving_pb2.PushFeaturesResponse) -> None:
        self.rows_written = int(response.rows_written)
        self.rows_skipped_not_newer = int(response.rows_skipped_not_newer)

    def __repr__(self) -> str:
        return f"PushResult(written={self.rows_written}, skipped={self.rows_skipped_not_newer})"


def online_features(
    features: Sequence[str] | None,
    feature_service: str | None,
    entities: Columns | None,
    entity_rows: Sequence[Mapping[str, Any]] | None = None,
) -> Call[OnlineFeatures]:
    if (entities is None) == (entity_rows is None):
        raise InvalidValueError("pass exactly one of entities= and entity_rows=")
    request, keys = online_features_request(
        features, feature_service, entities if entity_rows is None else entity_rows
    )

    def decode(response: serving_pb2.GetOnlineFeaturesResponse) -> OnlineFeatures:
        return decode_online_features(response, keys)

    return Call("GetOnlineFeatures", request, decode, retry=True)


def model_features(
    model: str, alias: str | None, stage: str | None, version: int | None, entities: Columns
) -> Call[tuple[ModelVersion, OnlineFeatures]]:
    request, keys = model_features_request(model, selector(alias, stage, version), entities)

    def decode(
        response: serving_pb2.GetModelFeaturesResponse,
    ) -> tuple[ModelVersion, OnlineFeatures]:
        features = decode_online_features(response, keys)
        return ModelVersion.from_message(response.model_version), features

    return Call("GetModelFeatures", request, decode, retry=True)


def model_version(
    model: str, alias: str | None, stage: str | None, version: int | None
) -> Call[ModelVersion]:
    request = registry_pb2.GetModelVersionRequest(
        name=model, selector=selector(alias, stage, version)
    )

    def decode(response: registry_pb2.GetModelVersionResponse) -> ModelVersion:
        return ModelVersion.from_message(response.model_version, response.stale)

    return Call("GetModelVersion", request, decode, retry=True)


def push(
    view: str, rows: Columns | Sequence[Mapping[str, Any]], missing_features_are_null: bool
) -> Call[PushResult]:
    request = push_request(view, rows, missing_features_are_null)
    return Call("PushFeatures", request, PushResult, retry=False)

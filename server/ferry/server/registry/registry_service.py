"""RegistryService: GetModelVersion and WatchModelVersion over the in-memory registry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio

from ferry.api.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry.server.access import require
from ferry.server.errors import InvalidRequestError
from ferry.server.registry.model_registry import (
    ModelRegistry,
    ModelVersionInfo,
    Resolution,
    Selector,
)


def selector_of(name: str, selector: registry_pb2.ModelSelector, has_selector: bool) -> Selector:
    """The request's selector.

    Raises:
        InvalidRequestError: no model name, or no selector member set.
    """
    if not name:
        raise InvalidRequestError("the request names no model", reason="MISSING_MODEL_NAME")
    which = selector.WhichOneof("selector") if has_selector else None
    if which == "alias" and selector.alias:
        return Selector(alias=selector.alias)
    if which == "stage" and selector.stage:
        return Selector(stage=selector.stage)
    if which == "version" and selector.version > 0:
        return Selector(version=selector.version)
    raise InvalidRequestError(
        "the selector must set one of alias, stage or version (1 or more)",
        reason="MISSING_SELECTOR",
        model=name,
    )


def version_message(info: ModelVersionInfo) -> registry_pb2.ModelVersion:
    return registry_pb2.ModelVersion(
        name=info.name,
        version=info.version,
        aliases=list(info.aliases),
        stage=info.stage,
        run_id=info.run_id,
        source=info.source,
        tags=dict(info.tags),
        creation_timestamp_micros=info.creation_micros,
        last_updated_timestamp_micros=info.last_updated_micros,
        feature_service=info.feature_service,
    )


class RegistryService(registry_pb2_grpc.RegistryServiceServicer):
    """Answers from the registry's memory; the first ask of a model loads it."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    async def GetModelVersion(  # noqa: N802 - the gRPC method name
        self, request: registry_pb2.GetModelVersionRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.GetModelVersionResponse:
        selector = selector_of(request.name, request.selector, request.HasField("selector"))
        require("read", "registry", request.name)
        found = await self._registry.resolve(request.name, selector)
        return registry_pb2.GetModelVersionResponse(
            model_version=version_message(found.version),
            stale=found.stale,
            refreshed_at_micros=found.refreshed_at_micros,
        )

    async def WatchModelVersion(  # noqa: N802
        self, request: registry_pb2.WatchModelVersionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[registry_pb2.WatchModelVersionResponse]:
        selector = selector_of(request.name, request.selector, request.HasField("selector"))
        require("read", "registry", request.name)
        changes: AsyncIterator[Resolution] = self._registry.watch(request.name, selector)
        async for found in changes:
            yield registry_pb2.WatchModelVersionResponse(
                model_version=version_message(found.version), stale=found.stale
            )


REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


def add_to_server(registry: ModelRegistry, server: grpc.aio.Server) -> None:
    """Register RegistryService over ``registry``."""
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryService(registry), server)

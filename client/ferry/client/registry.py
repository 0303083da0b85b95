"""Model registry helpers: bind a model version to the feature service it was trained with,
and decode RegistryService answers."""

from __future__ import annotations

from dataclasses import dataclass

from ferry.api.registry.v1 import registry_pb2
from ferry.core.errors import InvalidValueError
from ferry.core.model_binding import FEATURE_SERVICE_TAG


def bind_feature_service(
    model: str, version: int | str, feature_service: str, tracking_uri: str | None = None
) -> None:
    """Tag an MLflow model version with its feature service (``ferry.feature_service``).

    GetModelFeatures serves exactly that service's features for the version.
    """
    # Optional, heavy dependency: only this helper needs it.
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_model_version_tag(
        model, str(version), FEATURE_SERVICE_TAG, feature_service
    )


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version as the server resolved it (timestamps in µs)."""

    name: str
    version: int
    aliases: tuple[str, ...]
    stage: str
    run_id: str
    source: str
    tags: dict[str, str]
    feature_service: str
    creation_micros: int
    last_updated_micros: int
    stale: bool = False

    @classmethod
    def from_message(cls, message: registry_pb2.ModelVersion, stale: bool = False) -> ModelVersion:
        return cls(
            message.name,
            int(message.version),
            tuple(message.aliases),
            message.stage,
            message.run_id,
            message.source,
            dict(message.tags),
            message.feature_service,
            int(message.creation_timestamp_micros),
            int(message.last_updated_timestamp_micros),
            stale,
        )


def selector(
    alias: str | None, stage: str | None, version: int | None
) -> registry_pb2.ModelSelector:
    """The selector of exactly one of alias, stage and version."""
    given = [x is not None for x in (alias, stage, version)]
    if sum(given) != 1:
        raise InvalidValueError("pass exactly one of alias=, stage= and version=")
    if alias is not None:
        return registry_pb2.ModelSelector(alias=alias)
    if stage is not None:
        return registry_pb2.ModelSelector(stage=stage)
    return registry_pb2.ModelSelector(version=int(version or 0))

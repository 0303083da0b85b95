"""The MLflow model registry as a ``RegistrySource``.

MLflow is large (~850 MB, 2-4 s to import), so it is imported only when a registry is
configured. Its HTTP client retries for minutes by default; a poll must fail fast instead,
so retries are turned off and requests bounded (unless the environment says otherwise).
"""

from __future__ import annotations

import os
from typing import Any

from ferry.core.redaction import redact_url
from ferry.server.errors import RegistryError, RegistryUnavailableError, UnknownModelError
from ferry.server.registry.model_registry import ModelSnapshot, ModelVersionInfo

_NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


class MlflowSource:
    """Reads registered models through ``MlflowClient`` (tracking URI ``sqlite:///...`` or
    ``http://host:port``)."""

    def __init__(self, tracking_uri: str) -> None:
        """Raises:
        RegistryError: MLflow cannot use the URI (its scheme, or its form)."""
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        # Optional, heavy dependency: imported only when a registry is configured.
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        try:
            self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        except (MlflowException, ValueError) as err:  # an unknown scheme, a bracket left open
            shown = redact_url(tracking_uri)
            said = str(getattr(err, "message", err)).replace(tracking_uri, shown)
            raise RegistryError(f"model registry {shown!r} cannot be used: {said}") from None
        self._error = MlflowException

    def snapshot(self, name: str, extra_versions: frozenset[int]) -> ModelSnapshot:
        try:
            model = self._client.get_registered_model(name)
            aliases = {alias: int(v) for alias, v in (model.aliases or {}).items()}
            stages = {mv.current_stage: int(mv.version) for mv in model.latest_versions or []}
            wanted = set(aliases.values()) | set(stages.values()) | set(extra_versions)
            versions = {v: self._version(name, v) for v in sorted(wanted)}
        except self._error as err:
            if getattr(err, "error_code", "") == _NOT_FOUND:
                raise UnknownModelError(
                    f"unknown model {name!r} in the registry: {err.message}", model=name
                ) from err
            raise RegistryUnavailableError(
                f"model registry {redact_url(self.tracking_uri)} failed: {err.message}"
            ) from err
        except OSError as err:
            raise RegistryUnavailableError(
                f"model registry {redact_url(self.tracking_uri)} is unreachable: {err}"
            ) from err
        return ModelSnapshot(aliases, stages, versions)

    def _version(self, name: str, version: int) -> ModelVersionInfo:
        mv: Any = self._client.get_model_version(name, str(version))
        return ModelVersionInfo(
            name=name,
            version=int(mv.version),
            aliases=tuple(sorted(mv.aliases or ())),
            stage=mv.current_stage or "",
            run_id=mv.run_id or "",
            source=mv.source or "",
            tags=tuple(sorted((mv.tags or {}).items())),
            creation_micros=int(mv.creation_timestamp or 0) * 1000,
            last_updated_micros=int(mv.last_updated_timestamp or 0) * 1000,
        )

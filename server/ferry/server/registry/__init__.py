"""The registry flow: which model version is live and which features it was trained with.

``ModelRegistry`` keeps it in memory (``RegistrySource`` reads a registry; ``MlflowSource``
reads MLflow), ``WebhookReceiver`` hears of changes at once, and ``RegistryService``
answers GetModelVersion and WatchModelVersion. The errors live in ``ferry.server.errors``.
"""

from ferry.server.registry.mlflow_source import MlflowSource
from ferry.server.registry.model_registry import (
    ModelRegistry,
    ModelSnapshot,
    ModelVersionInfo,
    RegistrySource,
    Resolution,
    Selector,
)
from ferry.server.registry.registry_service import (
    REGISTRY_SERVICE,
    RegistryService,
    add_to_server,
    selector_of,
    version_message,
)
from ferry.server.registry.webhooks import WebhookReceiver, signature_ok

__all__ = [
    "REGISTRY_SERVICE",
    "MlflowSource",
    "ModelRegistry",
    "ModelSnapshot",
    "ModelVersionInfo",
    "RegistryService",
    "RegistrySource",
    "Resolution",
    "Selector",
    "WebhookReceiver",
    "add_to_server",
    "selector_of",
    "signature_ok",
    "version_message",
]

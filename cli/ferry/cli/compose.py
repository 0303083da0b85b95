"""The composition root: the one place where settings become opened parts.

``ferry serve`` and the materialization commands name stores and registries by URL; here
they are opened and handed, ready, to ``FerryServer`` and the materialization job, so
neither opens anything from strings and tests build both from real parts the same way.
Everything a server is built from is picklable, since ``--workers`` builds one per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ferry.core.errors import FerryError
from ferry.core.redaction import redact_url
from ferry.core.repo_file import load_repo
from ferry.server import FerryServer, ServedFeatures, ServedRegistry, ServerBuilder, ServerConfig
from ferry.server.registry import MlflowSource, ModelRegistry, WebhookReceiver
from ferry.stores.base import OnlineStore
from ferry.stores.near_cache import CacheLimits
from ferry.stores.urls import open_online_store


@dataclass(frozen=True)
class RegistryConfig:
    """The model registry a server fronts.

    Attributes:
        tracking_uri: MLflow tracking URI: ``sqlite:///path`` (no server) or
            ``http://host:port`` of an ``mlflow server``.
        poll_interval_s: How often every model in use is re-read, in seconds. Default 1.
        webhook_host: Address of the webhook receiver. Default 127.0.0.1.
        webhook_port: Port of the webhook receiver; None runs none, 0 picks a free one.
        webhook_secret: The secret MLflow signs deliveries with; required with a receiver.
    """

    tracking_uri: str
    poll_interval_s: float = 1.0
    webhook_host: str = "127.0.0.1"
    webhook_port: int | None = None
    webhook_secret: str = ""


@dataclass(frozen=True)
class FeaturesConfig:
    """The features a server serves.

    Attributes:
        repo_file: The feature repo YAML; re-read on SIGHUP.
        online_store: Online store URL.
        cache: Bounds of a near cache in front of the store's reads; None for none.
        read_legacy_keys: Also read rows under the key layout before December 2026.
    """

    repo_file: str
    online_store: str
    cache: CacheLimits | None = None
    read_legacy_keys: bool = False


def open_store(url: str) -> OnlineStore:
    """The online store at ``url`` (``sqlite:///PATH``, ``redis://HOST:PORT/DB``).

    Raises:
        FerryError: the URL names no backend Ferry has, or is malformed.
    """
    return open_online_store(url)


def open_features(config: FeaturesConfig) -> ServedFeatures:
    """The serving flow's parts: the store opened, the repo file read on demand."""
    return ServedFeatures(
        store=open_store(config.online_store),
        load_repo=functools.partial(load_repo, config.repo_file),
        description=f"{config.repo_file} (store {redact_url(config.online_store)})",
        cache=config.cache,
        read_legacy_keys=config.read_legacy_keys,
    )


def open_registry(config: RegistryConfig) -> ServedRegistry:
    """The registry flow's parts: MLflow behind the in-memory registry, and the webhook
    receiver if a port is given.

    Raises:
        FerryError: a webhook receiver without a secret.
    """
    registry = ModelRegistry(MlflowSource(config.tracking_uri), config.poll_interval_s)
    webhooks = None
    if config.webhook_port is not None:
        if not config.webhook_secret:
            raise FerryError(
                "a webhook receiver needs a secret (--webhook-secret or $FERRY_WEBHOOK_SECRET)"
            )
        webhooks = WebhookReceiver(
            config.webhook_host, config.webhook_port, config.webhook_secret, registry.changed
        )
    return ServedRegistry(registry, webhooks)


def server_builder(
    features: FeaturesConfig | None, registry: RegistryConfig | None
) -> ServerBuilder:
    """A picklable factory of servers over these parts (one call per worker process)."""
    return functools.partial(_build_server, features, registry)


def _build_server(
    features: FeaturesConfig | None, registry: RegistryConfig | None, config: ServerConfig
) -> FerryServer:
    # The registry first: its settings can still be refused before a store is opened.
    served_registry = open_registry(registry) if registry is not None else None
    return FerryServer(
        config,
        features=open_features(features) if features is not None else None,
        registry=served_registry,
    )

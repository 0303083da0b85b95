"""The Ferry server process: gRPC on uvloop, health, reflection, reload and graceful stop.

Signals: SIGTERM and SIGINT drain (health goes NOT_SERVING, new calls are refused, calls in
flight finish within the grace period) and exit 0; SIGHUP reloads the repo file, keeping
the old definitions if the new file is invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from dataclasses import dataclass, field

import grpc
import grpc.aio
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from ferry.api.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry.api.serving.v1 import serving_pb2
from ferry.core.errors import FerryError
from ferry.core.repo_file import load_repo
from ferry.server.catalog import Catalog
from ferry.server.errors import ErrorInterceptor
from ferry.server.health import SERVING, StoreHealth
from ferry.server.mlflow_source import MlflowSource
from ferry.server.model_registry import ModelRegistry
from ferry.server.registry_service import RegistryService
from ferry.server.service import Limits, ServingService
from ferry.server.service import add_to_server as add_serving_service
from ferry.server.webhooks import WebhookReceiver
from ferry.stores.base import OnlineStore
from ferry.stores.urls import open_online_store

log = logging.getLogger("ferry.server")
SERVING_SERVICE = serving_pb2.DESCRIPTOR.services_by_name["ServingService"].full_name
REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
DEFAULT_PORT = 6570


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
class ServerConfig:
    """How to run a server.

    Attributes:
        repo_file: The feature repo YAML; reloaded on SIGHUP. Unused without features.
        online_store: Online store URL. Unused without features.
        host: Address to listen on. Default 127.0.0.1.
        port: Port; 0 picks a free one. Default 6570.
        limits: Per-request bounds.
        max_message_bytes: Largest request or response message. Default 16 MiB.
        health_interval_s: Store probe period, in seconds. Default 0.5.
        grace_s: How long in-flight calls may finish after SIGTERM, in seconds. Default 10.
        registry: The model registry to serve (RegistryService, GetModelFeatures), or None.
        serve_features: False runs the registry alone, without a repo or online store.
    """

    repo_file: str = ""
    online_store: str = ""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    limits: Limits = field(default_factory=Limits)
    max_message_bytes: int = 16 * 1024 * 1024
    health_interval_s: float = 0.5
    grace_s: float = 10.0
    registry: RegistryConfig | None = None
    serve_features: bool = True


class FerryServer:
    """One server process's gRPC server and its state."""

    def __init__(self, config: ServerConfig, store: OnlineStore | None = None) -> None:
        self.config = config
        self.health_servicer = health_aio.HealthServicer()
        self.registry: ModelRegistry | None = None
        self.webhooks: WebhookReceiver | None = None
        self.health: StoreHealth | None = None
        self.store: OnlineStore | None = None
        if config.registry is not None:
            self.registry = ModelRegistry(
                MlflowSource(config.registry.tracking_uri), config.registry.poll_interval_s
            )
        if config.serve_features:
            self.catalog = Catalog(load_repo(config.repo_file))
            self.store = store or open_online_store(config.online_store)
            self.health = StoreHealth(
                self.health_servicer, self.store, [SERVING_SERVICE], config.health_interval_s
            )
        self.server = grpc.aio.server(
            interceptors=[ErrorInterceptor(self._store_down)],
            options=[
                ("grpc.so_reuseport", 1),
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
            ],
        )
        services = [
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        if self.store is not None:
            add_serving_service(
                ServingService(lambda: self.catalog, self.store, config.limits, self.registry),
                self.server,
            )
            services.append(SERVING_SERVICE)
        if self.registry is not None:
            registry_pb2_grpc.add_RegistryServiceServicer_to_server(
                RegistryService(self.registry), self.server
            )
            services.append(REGISTRY_SERVICE)
        health_pb2_grpc.add_HealthServicer_to_server(self.health_servicer, self.server)
        reflection.enable_server_reflection(services, self.server)
        self.port = 0

    def _store_down(self) -> None:
        if self.health is not None:
            self.health.store_down()

    async def start(self) -> int:
        """Listen and start serving; returns the bound port."""
        address = f"{self.config.host}:{self.config.port}"
        try:
            # grpcio returns 0 or raises RuntimeError, depending on the version.
            self.port = self.server.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise FerryError(f"cannot listen on {address}: the address is in use or not local")
        await self.server.start()
        if self.health is not None:
            await self.health.start()
        else:
            await self.health_servicer.set("", SERVING)
        if self.registry is not None:
            await self.registry.start()
            settings = self.config.registry
            if settings is not None and settings.webhook_port is not None:
                if not settings.webhook_secret:
                    raise FerryError(
                        "a webhook receiver needs a secret (--webhook-secret or "
                        "$FERRY_WEBHOOK_SECRET)"
                    )
                self.webhooks = WebhookReceiver(
                    settings.webhook_host,
                    settings.webhook_port,
                    settings.webhook_secret,
                    self._model_changed,
                )
                await self.webhooks.start()
        return self.port

    async def _model_changed(self, name: str) -> None:
        if self.registry is not None and name in self.registry.models():
            with contextlib.suppress(FerryError):
                await self.registry.refresh(name)

    def reload(self) -> bool:
        """Re-read the repo file; on any problem keep the current definitions."""
        if not self.config.serve_features:
            return False
        try:
            catalog = Catalog(load_repo(self.config.repo_file))
        except FerryError as err:
            log.error("reload rejected, keeping the previous definitions: %s", err)
            return False
        self.catalog = catalog
        log.info(
            "reloaded %s: %d feature views, %d feature services",
            self.config.repo_file,
            len(catalog.repo.views),
            len(catalog.repo.services),
        )
        return True

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: NOT_SERVING, refuse new calls, let calls in flight finish, close the store.

        Every step is bounded, so a stuck dependency cannot keep the process from exiting.
        """
        grace = self.config.grace_s if grace_s is None else grace_s
        if self.health is not None:
            await _bounded_step("health drain", self.health.drain(), 5)
        else:
            await _bounded_step("health drain", self.health_servicer.enter_graceful_shutdown(), 5)
        if self.webhooks is not None:
            await _bounded_step("webhook receiver", self.webhooks.stop(), 5)
        await _bounded_step("gRPC server", self.server.stop(grace), grace + 5)
        if self.registry is not None:
            await _bounded_step("model registry", self.registry.stop(), 5)
        if self.store is not None:
            await _bounded_step("online store", self.store.close(), 10)


async def _bounded_step(what: str, step: Awaitable[None], seconds: float) -> None:
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.error("shutdown: %s did not stop within %g s; going on", what, seconds)


async def serve(config: ServerConfig) -> None:
    """Run one server until SIGTERM or SIGINT."""
    server = FerryServer(config)
    port = await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    print(
        json.dumps({"event": "serving", "address": f"{config.host}:{port}", "pid": os.getpid()}),
        flush=True,
    )
    log.info(
        "serving %s on %s:%d (store %s)", config.repo_file, config.host, port, config.online_store
    )
    await stopping.wait()
    log.info("draining: up to %g s for calls in flight", config.grace_s)
    await server.stop()
    log.info("stopped")


def run(config: ServerConfig) -> int:
    """Run one server process on uvloop; returns the exit code."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s",
    )
    uvloop.run(serve(config))
    return 0

"""The Ferry server process: gRPC on uvloop, health, reflection, reload and graceful stop.

Signals: SIGTERM and SIGINT drain (health goes NOT_SERVING, new calls are refused, calls in
flight finish within the grace period) and exit 0; SIGHUP reloads the repo file, the TLS
files and the access file, keeping what it had of each whose new file is invalid.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import grpc.aio
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from ferry.api.serving.v1 import serving_pb2
from ferry.core.errors import FerryError
from ferry.core.repo import FeatureRepo
from ferry.server.access import Access
from ferry.server.authenticate import AuthInterceptor
from ferry.server.bounds import MAX_PORT, check_number
from ferry.server.errors import NotImplementedYetError
from ferry.server.health import SERVING, StoreHealth
from ferry.server.interceptor import ErrorInterceptor
from ferry.server.logs import FailureLog
from ferry.server.logs import configure as configure_logs
from ferry.server.metrics import MeteredStore, Metrics
from ferry.server.observe import Observer
from ferry.server.registry import REGISTRY_SERVICE, ModelRegistry, WebhookReceiver
from ferry.server.registry import add_to_server as add_registry_service
from ferry.server.serving import SERVING_SERVICE, Catalog, Limits, ServingService
from ferry.server.serving import add_to_server as add_serving_service
from ferry.server.tls import ServerTls, TlsFiles, is_loopback
from ferry.server.tracing import TracedStore, Tracing
from ferry.stores.base import OnlineStore
from ferry.stores.cached import CachedOnlineStore
from ferry.stores.legacy_keys import LegacyKeysStore
from ferry.stores.near_cache import CacheLimits, NearCache

log = logging.getLogger("ferry.server")
DEFAULT_PORT = 6570


@dataclass(frozen=True)
class ServerConfig:
    """How to run a server process (what it serves comes opened: ``FerryServer``'s parts).

    Attributes:
        host: Address to listen on. Default 127.0.0.1.
        port: Port; 0 picks a free one. Default 6570.
        limits: Per-request bounds.
        max_message_bytes: Largest request or response message. Default 16 MiB.
        health_interval_s: Store probe period, in seconds. Default 0.5.
        grace_s: How long in-flight calls may finish after SIGTERM, in seconds. Default 10.
        reuse_port: Share the port with other processes (SO_REUSEPORT): only the workers of
            one ``ferry serve --workers N`` do; otherwise a second server on a taken port
            must fail, not silently split its traffic. Default False.
        tls: The certificate files; None serves plaintext, which only a loopback ``host``
            may do unless ``insecure`` says so.
        insecure: Serve plaintext on a non-loopback address (behind a mesh that encrypts,
            say). Default False: such a server refuses to start.
        access_file: Callers and their permissions (``ferry.server.access``); None checks
            nothing. Re-read on SIGHUP.
        reflection: Serve gRPC server reflection. Default True.
        metrics_port: Serve Prometheus metrics (``ferry.server.metrics``) over HTTP on this
            port (0: any free one); None serves none.
        metrics_host: Address of the metrics endpoint. Default 127.0.0.1.
        log_format: ``text`` or ``json`` (``ferry.server.logs``). Default text.
        tracing: Export OpenTelemetry spans (``ferry.server.tracing``; OTLP, configured
            by the ``OTEL_*`` variables). Default False.
        access_log_sample: Fraction of successful RPCs the access log records, beside
            the failed ones. Default 0.
        access_log_failures_per_s: Most failed-call lines a second for each method and code
            (the rest are counted in one line a second; INTERNAL always logged); 0 logs
            every one. Default 100.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    limits: Limits = field(default_factory=Limits)
    max_message_bytes: int = 16 * 1024 * 1024
    health_interval_s: float = 0.5
    grace_s: float = 10.0
    reuse_port: bool = False
    tls: TlsFiles | None = None
    insecure: bool = False
    access_file: str | None = None
    reflection: bool = True
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: str = "text"
    access_log_sample: float = 0.0
    access_log_failures_per_s: int = 100
    tracing: bool = False

    def __post_init__(self) -> None:
        """Raises ValueError for a port past 65535 or a number no server can run with."""
        check_number("ServerConfig", "port", self.port, minimum=0, maximum=MAX_PORT, integer=True)
        if self.metrics_port is not None:
            check_number(
                "ServerConfig",
                "metrics_port",
                self.metrics_port,
                minimum=0,
                maximum=MAX_PORT,
                integer=True,
            )
        check_number(
            "ServerConfig", "max_message_bytes", self.max_message_bytes, minimum=1, integer=True
        )
        check_number(
            "ServerConfig", "health_interval_s", self.health_interval_s, minimum=0, exclusive=True
        )
        check_number("ServerConfig", "grace_s", self.grace_s, minimum=0)
        check_number(
            "ServerConfig", "access_log_sample", self.access_log_sample, minimum=0, maximum=1
        )
        check_number(
            "ServerConfig",
            "access_log_failures_per_s",
            self.access_log_failures_per_s,
            minimum=0,
            integer=True,
        )
        if self.log_format not in ("text", "json"):
            raise ValueError(
                f"ServerConfig.log_format must be text or json, got {self.log_format!r}"
            )


@dataclass
class ServedFeatures:
    """The serving flow's parts, opened: ServingService over them.

    Attributes:
        store: The online store; the server closes it when it stops.
        load_repo: Reads the feature repo; called at start and on every SIGHUP (raising
            ``FerryError`` keeps the definitions in use).
        description: What is served, for the log (e.g. the repo file and the store).
        cache: Bounds of a near cache in front of the store's reads (``ferry.stores.cached``);
            None for none.
        read_legacy_keys: Also read rows under the key layout before December 2026
            (``ferry.stores.legacy_keys``).
    """

    store: OnlineStore
    load_repo: Callable[[], FeatureRepo]
    description: str = ""
    cache: CacheLimits | None = None
    read_legacy_keys: bool = False


@dataclass
class ServedRegistry:
    """The registry flow's parts, opened: RegistryService and GetModelFeatures over them.

    Attributes:
        registry: The in-memory model registry; started and stopped with the server.
        webhooks: A webhook receiver that tells the registry of changes, or None.
    """

    registry: ModelRegistry
    webhooks: WebhookReceiver | None = None


class FerryServer:
    """One server process's gRPC server over opened parts: features, a registry or both."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        features: ServedFeatures | None = None,
        registry: ServedRegistry | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        if features is None and registry is None:
            raise FerryError("a server needs features to serve, a model registry, or both")
        if config.tls is None and not config.insecure and not is_loopback(config.host):
            raise FerryError(
                f"refusing to serve plaintext on {config.host}, which is not a loopback "
                "address: give --tls-cert and --tls-key, or --insecure if the network "
                "encrypts for you (a service mesh, say)"
            )
        self.config = config
        self.tls = ServerTls(config.tls) if config.tls is not None else None
        self.access = Access(config.access_file) if config.access_file is not None else None
        self.metrics = Metrics() if config.metrics_port is not None else None
        self.metrics_port = 0
        self._metrics_http: asyncio.Server | None = None
        self.tracing = tracing if tracing is not None else (Tracing() if config.tracing else None)
        observer = Observer(self.metrics, config.access_log_sample, self.tracing)
        interceptors: list[grpc.aio.ServerInterceptor] = [
            ErrorInterceptor(
                self._store_down, observer, FailureLog(config.access_log_failures_per_s)
            )
        ]
        if self.access is not None:
            # After the error interceptor: a refusal leaves as a status with Ferry's reason.
            interceptors.append(AuthInterceptor(self.access))
        self.features = features
        self.health_servicer = health_aio.HealthServicer()
        self.registry = registry.registry if registry is not None else None
        if self.registry is not None and self.tracing is not None:
            self.registry.span = self.tracing.span
        self.webhooks = registry.webhooks if registry is not None else None
        self.health: StoreHealth | None = None
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                # gRPC sets SO_REUSEPORT by default on Linux: say it explicitly either way.
                ("grpc.so_reuseport", 1 if config.reuse_port else 0),
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
            ],
        )
        services = [
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        if features is not None:
            self.catalog = Catalog(features.load_repo())
            self.health = StoreHealth(
                self.health_servicer, features.store, [SERVING_SERVICE], config.health_interval_s
            )
            store = features.store
            if self.metrics is not None:
                store = MeteredStore(store, self.metrics)
                self.metrics.watch_store(features.store)
            if self.tracing is not None:
                store = TracedStore(store, self.tracing)
            if features.cache is not None:  # outside: a hit is no store call
                cache = NearCache(features.cache)
                cached = CachedOnlineStore(store, cache)
                limits = features.cache
                log.info(
                    "near cache: up to %d rows and %.0f MiB, %s",
                    limits.max_entries,
                    limits.max_bytes / (1 << 20),
                    "kept exact by the store's invalidations"
                    if cached.exact
                    else f"each row served at most {limits.ttl_ms:g} ms after it was read",
                )
                store = cached
                if self.metrics is not None:
                    self.metrics.watch_cache(cache)
            if features.read_legacy_keys:
                # Outside the cache, so it caches (and Redis invalidates) each layout's
                # key as itself.
                store = LegacyKeysStore(store)
                log.info("reading rows under the key layout before December 2026 too")
            service = ServingService(
                lambda: self.catalog, store, config.limits, self.registry, self.metrics
            )
            add_serving_service(service, self.server)
            services.append(SERVING_SERVICE)
        else:
            _refuse_serving(self.server)
        if self.registry is not None:
            add_registry_service(self.registry, self.server)
            services.append(REGISTRY_SERVICE)
            if self.metrics is not None:
                self.metrics.watch_registry(self.registry)
        health_pb2_grpc.add_HealthServicer_to_server(self.health_servicer, self.server)
        if config.reflection:
            reflection.enable_server_reflection(services, self.server)
        self.port = 0

    def _store_down(self) -> None:
        if self.health is not None:
            self.health.store_down()

    async def start(self) -> int:
        """Listen and start serving; returns the bound port."""
        address = host_port(self.config.host, self.config.port)
        try:
            # grpcio returns 0 or raises RuntimeError, depending on the version.
            if self.tls is not None:
                self.port = self.server.add_secure_port(address, self.tls.credentials())
            else:
                self.port = self.server.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise FerryError(f"cannot listen on {address}: the address is in use or not local")
        await self.server.start()
        try:
            await self._start_the_rest()
        except BaseException:
            await self.stop(0)  # nothing half-started is left behind the error
            raise
        return self.port

    async def _start_the_rest(self) -> None:
        if self.metrics is not None and self.config.metrics_port is not None:
            where = host_port(self.config.metrics_host, self.config.metrics_port)
            try:
                self._metrics_http = await self.metrics.serve_http(
                    self.config.metrics_host, self.config.metrics_port
                )
            except OSError as err:
                raise FerryError(f"cannot serve metrics on {where}: {err.strerror}") from err
            self.metrics_port = int(self._metrics_http.sockets[0].getsockname()[1])
        if self.health is not None:
            await self.health.start()
        else:
            await self.health_servicer.set("", SERVING)
        if self.registry is not None:
            await self.registry.start()
        if self.webhooks is not None:
            try:
                await self.webhooks.start()
            except OSError as err:
                where = host_port(self.webhooks.host, self.webhooks.port)
                raise FerryError(
                    f"cannot run the webhook receiver on {where}: {err.strerror}"
                ) from err

    def reload(self) -> bool:
        """SIGHUP: re-read the TLS files, the access file and the repo file; whatever fails
        to load is kept as it was. True if everything reloaded."""
        tls_ok = self.tls.reload() if self.tls is not None else True
        access_ok = self.access.reload() if self.access is not None else True
        return self._reload_repo() and tls_ok and access_ok

    def _reload_repo(self) -> bool:
        if self.features is None:
            return True
        try:
            catalog = Catalog(self.features.load_repo())
        except FerryError as err:
            log.error("reload rejected, keeping the previous definitions: %s", err)
            return False
        self.catalog = catalog
        log.info(
            "reloaded %s: %d feature views, %d feature services",
            self.features.description or "the repo",
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
        if self.features is not None:
            await _bounded_step("online store", self.features.store.close(), 10)
        if self._metrics_http is not None:
            self._metrics_http.close()
        if self.tracing is not None:
            self.tracing.shutdown()  # flushes the spans still batched


def _refuse_serving(server: grpc.aio.Server) -> None:
    """On a registry-only server, ServingService's methods say why they are not served
    (UNIMPLEMENTED with Ferry's reason) instead of gRPC's bare "Method not found!"."""

    def refusal() -> NotImplementedYetError:
        return NotImplementedYetError(
            "this server serves the model registry only (--registry-only): serve features, "
            "GetModelFeatures included, with ferry serve REPO_FILE --registry-uri URI"
        )

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise refusal()

    async def refuse_stream(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        for _ in ():  # a yield makes this an async generator, as stream handlers are
            yield b""
        raise refusal()

    methods = serving_pb2.DESCRIPTOR.services_by_name["ServingService"].methods
    handlers = {
        method.name: grpc.stream_stream_rpc_method_handler(refuse_stream)
        if method.client_streaming
        else grpc.unary_unary_rpc_method_handler(refuse)
        for method in methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVING_SERVICE, handlers),)
    )


ServerBuilder = Callable[[ServerConfig], FerryServer]
"""Builds a process's server from its config: the composition root's factory (``ferry
serve`` passes one; with ``--workers`` each worker process calls it, so it must pickle)."""


async def _bounded_step(what: str, step: Awaitable[None], seconds: float) -> None:
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.error("shutdown: %s did not stop within %g s; going on", what, seconds)


def host_port(host: str, port: int) -> str:
    """``HOST:PORT`` as gRPC and clients read it: an IPv6 address in brackets (``::1:0``
    was read as host ``::0.1.0.0``, port 443)."""
    bare = host.strip("[]")
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def announce_serving(address: str) -> None:
    """Tell the launcher this process listens: one JSON line on stdout.

    One os.write of the whole line, not print(): workers share the pipe, print() may write
    the text and the newline separately (unbuffered stdout), and two workers' lines then
    interleave. A write of under PIPE_BUF bytes to a pipe is atomic.
    """
    line = json.dumps({"event": "serving", "address": address, "pid": os.getpid()}) + "\n"
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), line.encode())


async def serve(build: ServerBuilder, config: ServerConfig) -> None:
    """Build one server and run it until SIGTERM or SIGINT."""
    server = build(config)
    port = await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    # What start-up built (modules, the repo, gRPC, pyarrow) lives as long as the process:
    # out of the collector's reach, a full collection under load scans only what serving
    # made since: full collections under load went from 24 ms to 0.2 ms (docs/benchmarks.md).
    gc.freeze()
    announce_serving(host_port(config.host, port))
    what = server.features.description if server.features is not None else "the registry"
    log.info("serving %s on %s", what, host_port(config.host, port))
    await stopping.wait()
    log.info("draining: up to %g s for calls in flight", config.grace_s)
    await server.stop()
    log.info("stopped")


def run(build: ServerBuilder, config: ServerConfig) -> int:
    """Run one server process on uvloop; returns the exit code."""
    configure_logs(config.log_format)
    uvloop.run(serve(build, config))
    return 0

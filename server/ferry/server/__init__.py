"""The Ferry gRPC server: the serving flow (``ferry.server.serving``), the registry flow
(``ferry.server.registry``) and the process that runs them (app, workers, health, errors,
interceptor). ``FerryServer`` takes its parts opened; ``ferry.cli.compose`` opens them."""

from ferry.server.app import (
    DEFAULT_PORT,
    FerryServer,
    ServedFeatures,
    ServedRegistry,
    ServerBuilder,
    ServerConfig,
    run,
    serve,
)
from ferry.server.serving import Limits
from ferry.server.tls import TlsFiles
from ferry.server.workers import run_workers

__all__ = [
    "DEFAULT_PORT",
    "FerryServer",
    "Limits",
    "ServedFeatures",
    "ServedRegistry",
    "ServerBuilder",
    "ServerConfig",
    "TlsFiles",
    "run",
    "run_workers",
    "serve",
]

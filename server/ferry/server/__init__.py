"""The Ferry gRPC server: ServingService over an online store, with health and reflection."""

from ferry.server.app import DEFAULT_PORT, FerryServer, RegistryConfig, ServerConfig, run, serve
from ferry.server.catalog import Catalog, FeaturePlan
from ferry.server.service import Limits, ServingService
from ferry.server.workers import run_workers

__all__ = [
    "DEFAULT_PORT",
    "Catalog",
    "FeaturePlan",
    "FerryServer",
    "Limits",
    "RegistryConfig",
    "ServerConfig",
    "ServingService",
    "run",
    "run_workers",
    "serve",
]

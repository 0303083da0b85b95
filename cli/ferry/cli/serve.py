"""``ferry serve``: the gRPC server."""

from __future__ import annotations

import argparse

from ferry.cli.arguments import CACHE_MB
from ferry.cli.compose import FeaturesConfig, RegistryConfig, server_builder
from ferry.cli.settings import load, online_store_url
from ferry.server import Limits, ServerConfig, TlsFiles, run_workers
from ferry.stores.near_cache import CacheLimits


def cache_limits(args: argparse.Namespace) -> CacheLimits | None:
    """The near cache ``--cache-entries``, ``--cache-mb`` and ``--cache-ttl-ms`` ask for."""
    if not args.cache_entries:
        return None
    return CacheLimits(
        max_entries=args.cache_entries,
        max_bytes=int((args.cache_mb or CACHE_MB) * (1 << 20)),
        ttl_ms=args.cache_ttl_ms,
    )


def run(args: argparse.Namespace) -> int:
    """Run the server (the grammar has checked the registry and repo arguments)."""
    registry = None
    if args.registry_uri:
        registry = RegistryConfig(
            args.registry_uri,
            args.poll_interval_s,
            webhook_host=args.webhook_host,
            webhook_port=args.webhook_port,
            webhook_secret=args.webhook_secret,
        )
    features = None
    if not args.registry_only:
        features = FeaturesConfig(
            args.repo_file,
            online_store_url(args, load(args)),
            cache_limits(args),
            args.read_legacy_keys,
        )
    config = ServerConfig(
        host=args.host,
        port=args.port,
        limits=Limits(
            args.max_entity_rows,
            args.store_timeout_ms / 1000,
            args.store_reads_in_flight,
            args.max_push_future_s,
        ),
        grace_s=args.grace_s,
        tls=TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None,
        insecure=args.insecure,
        access_file=args.access_file,
        reflection=not args.no_reflection,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        log_format=args.log_format,
        access_log_sample=args.access_log_sample,
        access_log_failures_per_s=args.access_log_failures_per_s,
        tracing=args.tracing,
    )
    return run_workers(server_builder(features, registry), config, args.workers)

"""``ferry serve``: the gRPC server."""

from __future__ import annotations

import argparse
import os

from ferry.cli.compose import FeaturesConfig, RegistryConfig, server_builder
from ferry.cli.settings import add_repo_arguments, load, online_store_url
from ferry.core.errors import FerryError
from ferry.server import DEFAULT_PORT, Limits, ServerConfig, run_workers


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve features over gRPC (ServingService, health, reflection)",
        description="Serve the repo's features from the online store over gRPC. Prints one "
        "JSON line per process when it listens. SIGTERM/SIGINT drain and exit 0; SIGHUP "
        "reloads the repo file.",
    )
    add_repo_arguments(parser, optional=True)
    parser.add_argument(
        "--registry-uri",
        help="MLflow tracking URI (sqlite:///PATH or "
        "http://HOST:PORT): also serve RegistryService and GetModelFeatures",
    )
    parser.add_argument(
        "--registry-only",
        action="store_true",
        help="serve only the registry: no repo file, no online store",
    )
    parser.add_argument(
        "--poll-interval-s",
        type=float,
        default=1.0,
        help="how often models in use are re-read from MLflow (default 1)",
    )
    parser.add_argument(
        "--webhook-port",
        type=int,
        help="run an MLflow webhook receiver on "
        "this port (0: any free one) for changes within ~0.1 s",
    )
    parser.add_argument(
        "--webhook-host",
        default="127.0.0.1",
        help="address of the webhook receiver, apart from --host (default 127.0.0.1)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("FERRY_WEBHOOK_SECRET", ""),
        help="secret MLflow signs webhooks with (default $FERRY_WEBHOOK_SECRET)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port, 0 for any free one (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT). Default 1: the kernel "
        "spreads connections, not calls, so extra processes only help when several client "
        "connections arrive; use the number of cores for many clients",
    )
    parser.add_argument(
        "--max-entity-rows",
        type=int,
        default=Limits.max_entity_rows,
        help=f"entity rows per request (default {Limits.max_entity_rows})",
    )
    parser.add_argument(
        "--store-timeout-ms",
        type=int,
        default=int(Limits.store_timeout_s * 1000),
        help="bound on one store call (default 1000)",
    )
    parser.add_argument(
        "--store-reads-in-flight",
        type=int,
        default=None,
        help="natural batching: most store reads at once; requests arriving meanwhile share "
        "the next read. 0 turns batching off. Default: the store's own (0 for SQLite and "
        "Redis, 2 for DynamoDB)",
    )
    parser.add_argument(
        "--max-push-future-s",
        type=float,
        default=Limits.max_push_future_s,
        help="how far past this server's clock a pushed timestamp may be (default "
        f"{Limits.max_push_future_s:g}); later rows are refused",
    )
    parser.add_argument(
        "--grace-s",
        type=float,
        default=10.0,
        help="time calls in flight get to finish on SIGTERM (default 10)",
    )
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
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
    if args.registry_only:
        if registry is None:
            raise FerryError("--registry-only needs --registry-uri")
    else:
        if not args.repo_file:
            raise FerryError("serve needs a repo file (or --registry-only)")
        features = FeaturesConfig(args.repo_file, online_store_url(args, load(args)))
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
    )
    return run_workers(server_builder(features, registry), config, args.workers)

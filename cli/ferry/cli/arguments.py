"""The command line's grammar: every subcommand, its arguments, and the checks that need no
repo file, store or server.

This module imports nothing beyond the standard library, so ``ferry --help``, every
``ferry COMMAND --help`` and every usage error answer before pyarrow, gRPC or MLflow load
(a second or more). Each subcommand names the function that runs it as
``"module:function"``; ``ferry.cli.main`` imports that module only once the arguments are
known to be good. The defaults that mirror a library's (port, limits, batch rows) are
checked against it by a test.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

ONLINE_STORE_ENV = "FERRY_ONLINE_STORE"
OFFLINE_ROOT_ENV = "FERRY_OFFLINE_ROOT"
TOKEN_ENV = "FERRY_TOKEN"
JOB_INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each pod of an Indexed Job

DEFAULT_PORT = 6570  # ferry.server.DEFAULT_PORT
MAX_ENTITY_ROWS = 10_000  # ferry.server.Limits.max_entity_rows
STORE_TIMEOUT_MS = 1_000  # ferry.server.Limits.store_timeout_s, in ms
MAX_PUSH_FUTURE_S = 300.0  # ferry.server.Limits.max_push_future_s
BATCH_ROWS = 16_384  # ferry.materializer.JobConfig.batch_rows
MAX_HELD_ROWS = 262_144  # ferry.materializer.JobConfig.max_held_rows
CACHE_MB = 64.0  # ferry.stores.near_cache.CacheLimits.max_bytes, in MiB

if TYPE_CHECKING:  # subscripted only for mypy: at run time the class is not generic
    _Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def parser() -> argparse.ArgumentParser:
    """The ``ferry`` parser: ``args.run`` names the function to run, ``args.command`` the
    subcommand."""
    return _build()[0]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed arguments, checked as far as they can be without loading anything; a bad
    combination exits 2 with the subcommand's usage, as argparse's own errors do."""
    root, commands = _build()
    args = root.parse_args(argv)
    problem = _problem(args)
    if problem:
        commands.choices[args.command].error(problem)
    return args


def _build() -> tuple[argparse.ArgumentParser, _Commands]:
    root = argparse.ArgumentParser(
        prog="ferry", description="Ferry: define features once, serve them as trained."
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _validate(commands)
    _init_store(commands)
    _materialize(commands)
    _lookup(commands)
    _delete_rows(commands)
    _serve(commands)
    _get(commands)
    _health(commands)
    _training_frame(commands)
    _verify(commands)
    return root, commands


def _problem(args: argparse.Namespace) -> str | None:
    if args.command == "serve":
        if bool(args.tls_cert) != bool(args.tls_key):
            return "--tls-cert and --tls-key go together"
        if args.tls_client_ca and not args.tls_cert:
            return "--tls-client-ca (mTLS) needs --tls-cert and --tls-key"
        if args.insecure and args.tls_cert:
            return "--insecure and --tls-cert contradict each other"
        if args.registry_only and not args.registry_uri:
            return "--registry-only needs --registry-uri"
        if not args.registry_only and not args.repo_file:
            return "serve needs a repo file (or --registry-only)"
        if args.metrics_port and args.metrics_port + args.workers - 1 > MAX_PORT:
            return (
                f"--metrics-port {args.metrics_port} with --workers {args.workers}: worker I "
                f"listens on PORT+I, past {MAX_PORT}"
            )
        return _cache_problem(args)
    if args.command in ("materialize", "materialize-incremental"):
        if args.shard is not None and (args.ray is not None or args.shards is not None):
            return "--shard runs one shard, --ray --shards N all of them: choose one"
        if args.shard is not None:
            return _shard_problem(args.shard, args.end)
        if args.ray is not None or args.shards is not None:
            return _ray_problem(args)
    if args.command in ("get", "verify", "health") and bool(args.tls_cert) != bool(args.tls_key):
        return "--tls-cert and --tls-key go together"
    return None


def _cache_problem(args: argparse.Namespace) -> str | None:
    if not args.cache_entries and (args.cache_ttl_ms is not None or args.cache_mb is not None):
        return "--cache-ttl-ms and --cache-mb bound a near cache: turn it on with --cache-entries"
    return None


MAX_PORT = 65_535  # as ferry.server.bounds: parsing flags must not import server code


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535: past it the kernel wraps the number (99999
    listened on 34463)."""
    number = _integer(text)
    if not 0 <= number <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0 to {MAX_PORT})")
    return number


def count(minimum: int) -> Callable[[str], int]:
    """An integer of at least ``minimum`` (0 where 0 turns a thing off)."""

    def parse_count(text: str) -> int:
        number = _integer(text)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{text}: must be at least {minimum}")
        return number

    return parse_count


def positive_number(text: str) -> float:
    """A finite number above 0 (seconds, ms, MiB): 'nan' and 'inf' parse as floats but
    bound nothing ('nan' seconds of grace broke the drain)."""
    number = _finite(text)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be above 0")
    return number


def non_negative_number(text: str) -> float:
    """A finite number of at least 0."""
    number = _finite(text)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 0")
    return number


def fraction(text: str) -> float:
    """A finite number from 0 to 1."""
    number = _finite(text)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"{text}: must be between 0 and 1")
    return number


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _finite(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return number


def shard_of(text: str) -> tuple[int, int]:
    """``I/N`` (or ``job-index/N``) as (index, count); ValueError if malformed."""
    index, _, count = text.partition("/")
    if index == "job-index":
        index = os.environ.get(JOB_INDEX_ENV, "")
    return int(index), int(count)


def _shard_problem(text: str, end: str) -> str | None:
    try:
        index, count = shard_of(text)
    except ValueError:
        if text.startswith("job-index/") and JOB_INDEX_ENV not in os.environ:
            return f"--shard job-index/N needs ${JOB_INDEX_ENV}"
        return f"--shard {text!r}: expected I/N, e.g. 0/4"
    if count < 1:
        return f"--shard {text!r}: N must be at least 1"
    if not 0 <= index < count:
        return f"--shard {text!r}: the index must be 0 to N-1"
    if end.strip().lower() == "now":
        return (
            "--shard needs an explicit --end instant: 'now' would differ from shard to shard, "
            "and the shards of one window must agree on it"
        )
    return None


def _ray_problem(args: argparse.Namespace) -> str | None:
    if args.ray is None:
        return "--shards needs --ray (or run each shard yourself with --shard I/N)"
    if args.shards is None:
        return "--ray needs --shards N"
    return None  # --end now is fine: the driver reads the clock once and plans every shard


def _repo_arguments(
    parser: argparse.ArgumentParser, online: bool = True, optional: bool = False
) -> None:
    parser.add_argument(
        "repo_file", nargs="?" if optional else None, help="the feature repo YAML file"
    )
    parser.add_argument(
        "--offline-root",
        help=f"root of the offline store (overrides ${OFFLINE_ROOT_ENV} and the repo file)",
    )
    if online:
        parser.add_argument(
            "--online-store",
            help="online store URL: sqlite:///PATH, redis://HOST:PORT/DB, "
            "redis+cluster://HOST:PORT[,HOST:PORT...] (rediss:// and rediss+cluster:// for "
            f"TLS) or dynamodb://TABLE?region=R (overrides ${ONLINE_STORE_ENV} and the repo file's "
            "online_store)",
        )


def _view_entity_arguments(parser: argparse.ArgumentParser) -> None:
    """``--view V`` and repeated ``--entity KEY=V1,V2,...``: the entities of one view."""
    parser.add_argument("--view", required=True, help="the feature view")
    parser.add_argument(
        "--entity",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="values of one join key; repeat for each join key of the view",
    )


def _client_arguments(parser: argparse.ArgumentParser) -> None:
    """How to reach a server: ``--target``, TLS files and a bearer token."""
    parser.add_argument("--target", required=True, help="HOST:PORT of a ferry server")
    parser.add_argument(
        "--tls-ca", help="connect with TLS; PEM CA certificates the server's must chain to"
    )
    parser.add_argument("--tls-cert", help="client certificate (PEM) for a server with mTLS")
    parser.add_argument("--tls-key", help="private key of --tls-cert")
    parser.add_argument("--tls-server-name", help="name to expect in the server's certificate")
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"bearer token for a server that checks them (default ${TOKEN_ENV})",
    )


def _validate(commands: _Commands) -> None:
    parser = commands.add_parser(
        "validate",
        help="check a feature repo file and that its sources match it",
        description="Report every problem of a feature repo file, then check that each "
        "view's source exists and has the declared columns and types. Exit 0 only when all "
        "is well.",
    )
    _repo_arguments(parser, online=False)
    parser.set_defaults(run="ferry.cli.validate:run")


def _init_store(commands: _Commands) -> None:
    parser = commands.add_parser(
        "init-store",
        help="create the online store's table (DynamoDB) if it does not exist; idempotent",
    )
    _repo_arguments(parser)
    parser.set_defaults(run="ferry.cli.init_store:run")


def _materialize(commands: _Commands) -> None:
    full = commands.add_parser(
        "materialize",
        help="load the online store with the as-of rows of a time window",
        description="For every entity with rows whose event time is in [START, END] (and "
        "within the view's TTL at END), write its as-of row at END to the online store, "
        "unless the store holds a newer one. Prints one JSON line per view and a total.",
    )
    _materialize_common(full)
    full.add_argument("--start", required=True, help="ISO 8601 instant; no zone means UTC")
    full.set_defaults(run="ferry.cli.materialize:run_window")

    incremental = commands.add_parser(
        "materialize-incremental",
        help="materialize from each view's watermark up to END",
        description="Like materialize, starting each view at its stored watermark; a first "
        "run starts at END minus the view's TTL.",
    )
    _materialize_common(incremental)
    incremental.set_defaults(run="ferry.cli.materialize:run_incremental")


def _materialize_common(parser: argparse.ArgumentParser) -> None:
    _repo_arguments(parser)
    parser.add_argument("--end", required=True, help="ISO 8601 instant or 'now'; no zone = UTC")
    parser.add_argument("--views", help="comma-separated view names (default: all)")
    parser.add_argument(
        "--batch-rows",
        type=count(1),
        default=BATCH_ROWS,
        help=f"rows reduced and written together (default {BATCH_ROWS})",
    )
    parser.add_argument(
        "--max-held-rows",
        type=count(0),
        default=MAX_HELD_ROWS,
        help="most encoded rows of a view held, the newest per key, before they are written "
        f"(each key written once where they fit; default {MAX_HELD_ROWS}, ~80 MB of fraud "
        "rows; 0 writes every batch)",
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="run shard I (from 0) of N: every N-th row group of each source; I may be "
        f"'job-index' for ${JOB_INDEX_ENV} (a Kubernetes Indexed Job). Needs an explicit --end",
    )
    ray = parser.add_argument_group("on a Ray cluster (the ray extra)")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run the shards as Ray tasks on the cluster at ADDRESS (HOST:PORT of its head, "
        "or ray://HOST:PORT); without ADDRESS, the cluster $RAY_ADDRESS names or `ray start` "
        "last started here, else a local one for this run. Needs --shards",
    )
    ray.add_argument("--shards", type=count(1), metavar="N", help="how many shards (with --ray)")
    ray.add_argument(
        "--shard-retries",
        type=count(0),
        default=2,
        metavar="K",
        help="submit a failed shard again up to K times (default 2)",
    )
    parser.add_argument(
        "--pushgateway",
        metavar="URL",
        help="push the run's counts to this Prometheus Pushgateway (http://HOST:PORT)",
    )


def _lookup(commands: _Commands) -> None:
    parser = commands.add_parser(
        "lookup",
        help="print stored rows of one view for some entities, straight from the online store",
    )
    _repo_arguments(parser)
    _view_entity_arguments(parser)
    _legacy_keys_argument(parser)
    parser.set_defaults(run="ferry.cli.lookup:run")


def _legacy_keys_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--read-legacy-keys",
        action="store_true",
        help="also read rows stored under the key layout before December 2026 (project:view: "
        "prefixes), serving the newer of an entity's two rows, while a store migrates "
        "(docs/storage-format.md); each read asks for twice the keys",
    )


def _delete_rows(commands: _Commands) -> None:
    parser = commands.add_parser(
        "delete-rows",
        help="remove stored rows of some entities of one view (repair a row from the future)",
        description="Shows the stored rows of the entities (one JSON line each); with --yes "
        "deletes them, under both key layouts (before and since December 2026). Re-run the "
        "materialization (or push) afterwards to store the right rows.",
    )
    _repo_arguments(parser)
    _view_entity_arguments(parser)
    parser.add_argument("--yes", action="store_true", help="delete (default: only show)")
    parser.set_defaults(run="ferry.cli.delete_rows:run")


def _serve(commands: _Commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve features over gRPC (ServingService, health, reflection)",
        description="Serve the repo's features from the online store over gRPC. Prints one "
        "JSON line per process when it listens. SIGTERM/SIGINT drain and exit 0; SIGHUP "
        "reloads the repo file.",
    )
    _repo_arguments(parser, optional=True)
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
        type=positive_number,
        default=1.0,
        help="how often models in use are re-read from MLflow (default 1)",
    )
    parser.add_argument(
        "--webhook-port",
        type=port,
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
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address (default 127.0.0.1); any other than a loopback one needs TLS or --insecure",
    )
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve TLS (with --tls-key)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        help="PEM CA certificates of client certificates: require mTLS (with --tls-cert)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="serve plaintext on a non-loopback --host (behind a mesh that encrypts)",
    )
    parser.add_argument(
        "--access-file",
        help="YAML of callers (token hashes, mTLS identities) and their permissions: every "
        "call but health and reflection must then authenticate; re-read on SIGHUP",
    )
    parser.add_argument(
        "--no-reflection", action="store_true", help="do not serve gRPC server reflection"
    )
    parser.add_argument(
        "--metrics-port",
        type=port,
        help="serve Prometheus metrics on this port (with --workers N, worker I on PORT+I)",
    )
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", help="address of the metrics endpoint"
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log lines (default text)"
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="export OpenTelemetry spans over OTLP, as the OTEL_* variables configure "
        "(needs the [tracing] extra)",
    )
    parser.add_argument(
        "--access-log-sample",
        type=fraction,
        default=0.0,
        help="fraction of successful RPCs to log, beside the failed ones (default 0)",
    )
    parser.add_argument(
        "--access-log-failures-per-s",
        type=count(0),
        default=100,
        metavar="N",
        help="most failed-call lines a second per method and code, the rest counted in one "
        "line a second (INTERNAL always logged); 0 logs every one (default 100)",
    )
    parser.add_argument(
        "--port",
        type=port,
        default=DEFAULT_PORT,
        help=f"port, 0 for any free one (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--workers",
        type=count(1),
        default=1,
        help="server processes sharing the port (SO_REUSEPORT). Default 1: the kernel "
        "spreads connections, not calls, so extra processes only help when several client "
        "connections arrive; use the number of cores for many clients",
    )
    parser.add_argument(
        "--max-entity-rows",
        type=count(1),
        default=MAX_ENTITY_ROWS,
        help=f"entity rows per request (default {MAX_ENTITY_ROWS})",
    )
    parser.add_argument(
        "--store-timeout-ms",
        type=count(1),
        default=STORE_TIMEOUT_MS,
        help=f"bound on one store call (default {STORE_TIMEOUT_MS})",
    )
    parser.add_argument(
        "--store-reads-in-flight",
        type=count(0),
        default=None,
        help="natural batching: most store reads at once; requests arriving meanwhile share "
        "the next read. 0 turns batching off. Default: the store's own (0 for SQLite and "
        "Redis, 2 for DynamoDB)",
    )
    parser.add_argument(
        "--cache-entries",
        type=count(0),
        default=0,
        help="near cache: keep up to this many recently read rows in memory (default 0: "
        "none). On Redis it is kept exact by Redis's invalidations; other stores need "
        "--cache-ttl-ms",
    )
    parser.add_argument(
        "--cache-mb",
        type=positive_number,
        default=None,
        help=f"near cache: most memory for keys and rows (default {CACHE_MB:g})",
    )
    parser.add_argument(
        "--cache-ttl-ms",
        type=positive_number,
        default=None,
        help="near cache: serve a cached row at most this long after it was read; required "
        "for stores without invalidations (SQLite, DynamoDB), where it is how "
        "far a served value may lag a write made elsewhere",
    )
    parser.add_argument(
        "--max-push-future-s",
        type=non_negative_number,
        default=MAX_PUSH_FUTURE_S,
        help="how far past this server's clock a pushed timestamp may be (default "
        f"{MAX_PUSH_FUTURE_S:g}); later rows are refused",
    )
    _legacy_keys_argument(parser)
    parser.add_argument(
        "--grace-s",
        type=non_negative_number,
        default=10.0,
        help="time calls in flight get to finish on SIGTERM (default 10)",
    )
    parser.set_defaults(run="ferry.cli.serve:run")


def _get(commands: _Commands) -> None:
    parser = commands.add_parser(
        "get",
        help="get features of entities from a running server",
        description="Values are integers when every value of a key parses as one, else "
        "strings; write KEY:string=... to force strings.",
    )
    _client_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--features", help="comma-separated view:feature or view:* references")
    which.add_argument("--feature-service", help="a feature service name")
    parser.add_argument(
        "--entity",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="values of one join key; repeat per join key",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per entity row")
    parser.add_argument("--timeout-s", type=positive_number, default=5.0, help="per-call timeout")
    parser.set_defaults(run="ferry.cli.get:run")


def _health(commands: _Commands) -> None:
    parser = commands.add_parser(
        "health",
        help="ask a server's gRPC health service; exit 0 only if SERVING (for probes)",
    )
    _client_arguments(parser)
    parser.add_argument(
        "--service",
        default="",
        help="the service to ask about (default: the server; or ferry.api.serving.v1."
        "ServingService, which is NOT_SERVING while the online store is unreachable)",
    )
    parser.add_argument("--timeout-s", type=positive_number, default=3.0, help="call timeout")
    parser.set_defaults(run="ferry.cli.health:run")


def _training_frame(commands: _Commands) -> None:
    parser = commands.add_parser(
        "training-frame",
        help="join features to an entity table as of each row's time (offline)",
        description="Write the entity table with one column per feature, each taken by the "
        "same as-of rule the materializer uses. Rows without a match get nulls.",
    )
    _repo_arguments(parser, online=False)
    parser.add_argument("--entities", required=True, help="Parquet file of entity rows")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--features", help="comma-separated view:feature or view:* references")
    which.add_argument("--feature-service", help="a feature service name")
    parser.add_argument("--timestamp-column", default="event_timestamp")
    parser.add_argument(
        "--event-timestamps", action="store_true", help="add <view>:__event_timestamp columns"
    )
    parser.add_argument("--out", required=True, help="Parquet file to write")
    parser.set_defaults(run="ferry.cli.training_frame:run")


def _verify(commands: _Commands) -> None:
    parser = commands.add_parser(
        "verify",
        help="compare served features with the offline as-of values (skew check)",
        description="Sample entities of each view, ask the server for their features and "
        "compare with the offline as-of values at the view's materialization watermark (or "
        "--at). Prints one JSON line per mismatch and a summary; exits 1 if any differ.",
    )
    _repo_arguments(parser)
    _client_arguments(parser)
    parser.add_argument("--sample", type=count(1), default=1000, help="entities per view")
    parser.add_argument(
        "--at", help="ISO 8601 instant (default: each view's watermark, read from the online store)"
    )
    parser.add_argument("--views", help="comma-separated views (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.set_defaults(run="ferry.cli.verify:run")

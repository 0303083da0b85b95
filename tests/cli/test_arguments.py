"""The command line's grammar: instant help and usage errors (nothing heavy imported before
the arguments are good), and defaults that match the libraries they mirror."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ferry.cli import arguments
from ferry.materializer import JobConfig
from ferry.server import DEFAULT_PORT, Limits
from ferry.stores import CacheLimits

HEAVY = [
    "pyarrow",
    "numpy",
    "grpc",
    "yaml",
    "google.protobuf",
    "pandas",
    "mlflow",
    "ray",
    "ferry.core",
]


def imported_after(code: str) -> set[str]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    probe = (
        f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    last = done.stderr.splitlines()[-1]
    assert last.startswith("HEAVY:"), done.stderr
    return {name for name in last.removeprefix("HEAVY:").split(",") if name}


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["serve", "--help"],
        ["get", "--help"],
        ["materialize", "--help"],
        ["serve", "--registry-only"],  # a usage error
        ["get", "--target", "127.0.0.1:1"],  # missing --entity
    ],
)
def test_help_and_usage_errors_import_nothing_heavy(argv: list[str]) -> None:
    assert imported_after(f"import ferry.cli.main; ferry.cli.main.main({argv!r})") == set()


def test_ray_is_imported_only_on_the_ray_path() -> None:
    # Every module a plain materialization, the server and the client load; --ray loads
    # ferry.cli.materialize_on_ray, which imports Ray when it runs.
    modules = "ferry.cli.materialize, ferry.materializer, ferry.materializer.on_ray, ferry.server"
    assert "ray" not in imported_after(f"import {modules}, ferry.client, ferry.stores")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--registry-only"], "--registry-only needs --registry-uri"),
        (["serve"], "serve needs a repo file (or --registry-only)"),
        (["serve", "r.yaml", "--workers", "0"], "argument --workers: 0: must be at least 1"),
        (
            ["materialize", "r.yaml", "--start", "x", "--end", "y", "--batch-rows", "0"],
            "argument --batch-rows: 0: must be at least 1",
        ),
        (
            ["verify", "r.yaml", "--target", "t", "--sample", "0"],
            "argument --sample: 0: must be at least 1",
        ),
        (["serve", "r.yaml", "--cache-ttl-ms", "10"], "--cache-ttl-ms and --cache-mb bound a near"),
        (["serve", "r.yaml", "--cache-entries", "-1"], "argument --cache-entries: -1: must be at"),
        (["serve", "r.yaml", "--cache-mb", "0"], "argument --cache-mb: 0: must be above 0"),
        (["serve", "r.yaml", "--cache-ttl-ms", "nan"], "argument --cache-ttl-ms: 'nan' is not a"),
        # Each of these was accepted: a port past 65535 wrapped (99999 listened on 34463), 0
        # entity rows or a 0 ms store timeout failed every call, 'nan' broke the drain.
        (["serve", "r.yaml", "--port", "99999"], "argument --port: 99999 is not a port"),
        (["serve", "r.yaml", "--port", "-5"], "argument --port: -5 is not a port (0 to 65535)"),
        (["serve", "r.yaml", "--metrics-port", "70000"], "argument --metrics-port: 70000 is not"),
        (
            ["serve", "r.yaml", "--metrics-port", "65535", "--workers", "2"],
            "--metrics-port 65535 with --workers 2: worker I listens on PORT+I, past 65535",
        ),
        (["serve", "r.yaml", "--webhook-port", "x"], "argument --webhook-port: 'x' is not a whole"),
        (["serve", "r.yaml", "--max-entity-rows", "0"], "argument --max-entity-rows: 0: must be"),
        (["serve", "r.yaml", "--store-timeout-ms", "0"], "argument --store-timeout-ms: 0: must"),
        (
            ["serve", "r.yaml", "--store-reads-in-flight", "-1"],
            "argument --store-reads-in-flight: -1",
        ),
        (["serve", "r.yaml", "--grace-s", "nan"], "argument --grace-s: 'nan' is not a finite"),
        (["serve", "r.yaml", "--max-push-future-s", "-1"], "argument --max-push-future-s: -1"),
        (["serve", "r.yaml", "--poll-interval-s", "0"], "argument --poll-interval-s: 0: must be"),
        (
            ["serve", "r.yaml", "--access-log-sample", "2"],
            "argument --access-log-sample: 2: must be",
        ),
        (
            ["serve", "r.yaml", "--access-log-failures-per-s", "-1"],
            "argument --access-log-failures-per-s: -1: must be at least 0",
        ),
        (["get", "--target", "t", "--timeout-s", "inf"], "argument --timeout-s: 'inf' is not a"),
        (["health", "--target", "t", "--timeout-s", "0"], "argument --timeout-s: 0: must be above"),
    ],
)
def test_bad_combinations_are_usage_errors(argv: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ferry.cli.main", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert f"ferry {argv[0]}: error: {message}" in done.stderr
    assert done.stderr.startswith(f"usage: ferry {argv[0]}")


def test_defaults_match_the_libraries_they_mirror() -> None:
    assert arguments.DEFAULT_PORT == DEFAULT_PORT
    assert Limits.max_entity_rows == arguments.MAX_ENTITY_ROWS
    assert Limits.store_timeout_s * 1000 == arguments.STORE_TIMEOUT_MS
    assert Limits.max_push_future_s == arguments.MAX_PUSH_FUTURE_S
    assert JobConfig.batch_rows == arguments.BATCH_ROWS
    assert JobConfig.max_held_rows == arguments.MAX_HELD_ROWS
    assert CacheLimits.max_bytes == arguments.CACHE_MB * (1 << 20)


def test_every_subcommand_names_a_function_that_exists() -> None:
    import importlib

    root = arguments.parser()
    (commands,) = [a for a in root._actions if a.dest == "command"]
    for name, sub in commands.choices.items():  # type: ignore[union-attr]
        run = sub.get_default("run")
        module, _, function = run.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name

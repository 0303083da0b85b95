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
        (["serve", "r.yaml", "--workers", "0"], "--workers must be at least 1"),
        (
            ["materialize", "r.yaml", "--start", "x", "--end", "y", "--batch-rows", "0"],
            "--batch-rows",
        ),
        (["verify", "r.yaml", "--target", "t", "--sample", "0"], "--sample must be at least 1"),
        (["serve", "r.yaml", "--cache-ttl-ms", "10"], "--cache-ttl-ms and --cache-mb bound a near"),
        (["serve", "r.yaml", "--cache-entries", "-1"], "--cache-entries must be 0"),
        (["serve", "r.yaml", "--cache-entries", "9", "--cache-mb", "0"], "--cache-mb must be"),
        (["serve", "r.yaml", "--cache-entries", "9", "--cache-ttl-ms", "0"], "--cache-ttl-ms must"),
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

"""Settings built in Python are refused at construction when no server could run with them,
as the CLI refuses the same numbers as flags (tests/cli/test_arguments.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.server import Limits, ServerConfig


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"max_entity_rows": 0},
            "Limits.max_entity_rows must be an integer at least 1, got 0",
        ),
        ({"store_timeout_s": 0}, "Limits.store_timeout_s must be a finite number above 0, got 0"),
        ({"store_timeout_s": float("nan")}, "Limits.store_timeout_s must be a finite number"),
        (
            {"store_timeout_s": "1"},
            "Limits.store_timeout_s must be a finite number above 0, got '1'",
        ),
        ({"max_entity_rows": 2.5}, "Limits.max_entity_rows must be an integer"),
        ({"store_reads_in_flight": -1}, "Limits.store_reads_in_flight must be"),
        ({"max_push_future_s": float("inf")}, "Limits.max_push_future_s must be"),
    ],
)
def test_limits_no_server_can_run_with_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        Limits(**settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"port": 99_999},
            "ServerConfig.port must be an integer at least 0 and at most 65535",
        ),
        ({"port": -5}, "ServerConfig.port must be"),
        ({"port": True}, "ServerConfig.port must be"),
        ({"port": 80.5}, "ServerConfig.port must be an integer"),
        ({"metrics_port": 70_000}, "ServerConfig.metrics_port must be"),
        ({"max_message_bytes": 0}, "ServerConfig.max_message_bytes must be"),
        (
            {"health_interval_s": 0},
            "ServerConfig.health_interval_s must be a finite number above 0",
        ),
        ({"grace_s": float("nan")}, "ServerConfig.grace_s must be"),
        ({"access_log_sample": 1.5}, "ServerConfig.access_log_sample must be"),
        ({"access_log_failures_per_s": -1}, "ServerConfig.access_log_failures_per_s must be"),
        ({"log_format": "xml"}, "ServerConfig.log_format must be text or json, got 'xml'"),
    ],
)
def test_server_configs_no_server_can_run_with_are_refused(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message):
        ServerConfig(**settings)


def test_the_edges_are_taken() -> None:
    Limits(max_entity_rows=1, store_timeout_s=0.001, store_reads_in_flight=0, max_push_future_s=0)
    ServerConfig(port=0, metrics_port=65_535, grace_s=0, access_log_sample=1.0, log_format="json")

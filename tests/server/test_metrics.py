"""Prometheus metrics of a real server, scraped over HTTP: gRPC counts, codes and times;
values served by view and status, exactly as the answers had them; the age of what was
served; store calls; the process."""

from __future__ import annotations

import asyncio
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferry.client import AsyncFerryClient, NotFoundError, OnlineFeatures
from ferry.server import FerryServer
from tests.server.conftest import start_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def metered(sqlite_store: str) -> AsyncIterator[FerryServer]:
    server = await start_server(sqlite_store, metrics_port=0)
    yield server
    await server.stop(0)


def scrape(port: int) -> Samples:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= got)


async def test_metrics_count_what_was_served(metered: FerryServer) -> None:
    answers: list[OnlineFeatures] = []
    async with AsyncFerryClient(f"127.0.0.1:{metered.port}", timeout_s=5) as client:
        for rows in (1, 3, 50):  # below and above the array path's threshold
            users = list(range(1, rows + 1))
            merchants = [f"m{i:07d}" for i in users]
            answers.append(
                await client.get_online_features(
                    entities={"user_id": users, "merchant_id": merchants},
                    feature_service="fraud_v1",
                )
            )
        with pytest.raises(NotFoundError):
            await client.get_online_features(entities={"user_id": [1]}, feature_service="nope")
        row = {"user_id": 777_001, "event_timestamp": datetime.now(UTC), "txn_count_7d": 3}
        await client.push("user_stats", [row], missing_features_are_null=True)
    samples = await asyncio.to_thread(scrape, metered.metrics_port)

    method = {"grpc_service": "ferry.api.serving.v1.ServingService"}
    get = {**method, "grpc_method": "GetOnlineFeatures", "grpc_type": "unary"}
    assert value(samples, "grpc_server_started_total", **get) == 4
    assert value(samples, "grpc_server_handled_total", **get, grpc_code="OK") == 3
    assert value(samples, "grpc_server_handled_total", **get, grpc_code="NOT_FOUND") == 1
    assert value(samples, "grpc_server_handling_seconds_count", **get) == 4
    push = {**method, "grpc_method": "PushFeatures"}
    assert value(samples, "grpc_server_handled_total", **push, grpc_code="OK") == 1

    # Values by view and status: exactly what the three answers held.
    expected: Counter[tuple[str, str]] = Counter()
    present_rows: Counter[str] = Counter()  # rows with a PRESENT value, per view
    for answer in answers:
        for feature in answer:
            view = feature.name.split(":")[0]
            expected.update((view, status) for status in feature.statuses)
        for view in {f.name.split(":")[0] for f in answer}:
            columns = [f for f in answer if f.name.startswith(f"{view}:")]
            present_rows[view] += sum(
                any(f.statuses[i] == "PRESENT" for f in columns) for i in range(answer.row_count)
            )
    for (view, status), count in expected.items():
        got = value(samples, "ferry_served_values_total", feature_view=view, status=status)
        assert got == count, (view, status)
    assert value(samples, "ferry_served_entity_rows_total", feature_view="user_stats") == 54
    # Freshness: one age per row served PRESENT, at least as old as its event time says.
    for view, rows in present_rows.items():
        count = value(samples, "ferry_served_value_age_seconds_count", feature_view=view)
        assert count == rows, view
        assert value(samples, "ferry_served_value_age_seconds_sum", feature_view=view) > 0
    assert value(samples, "ferry_store_call_seconds_count", operation="read") == 3
    # The view's schema, recorded before this server's first push of it, then the rows.
    assert value(samples, "ferry_store_call_seconds_count", operation="write") == 2
    assert value(samples, "ferry_store_errors_total") == 0
    assert value(samples, "process_resident_memory_bytes") > 0


def test_each_worker_has_its_own_metrics_port() -> None:
    from ferry.server import ServerConfig
    from ferry.server.workers import _worker_config

    config = ServerConfig(metrics_port=9100)
    assert [_worker_config(config, i).metrics_port for i in range(3)] == [9100, 9101, 9102]
    assert _worker_config(ServerConfig(), 1).metrics_port is None

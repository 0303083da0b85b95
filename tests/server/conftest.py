"""A fraud data set whose snapshots end just before today, materialized, and served."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ferry.cli.compose import FeaturesConfig, RegistryConfig, open_features, open_registry
from ferry.core import FeatureRepo, load_repo
from ferry.core.timestamps import datetime_to_micros
from ferry.materializer import materialize, plan_window
from ferry.server import FerryServer, Limits, ServerConfig
from ferry.stores import CacheLimits, open_online_store
from tests.e2e.fraud import DAY, SAMPLE_REPO, generate

# Snapshots are on days D, D+1, D+2 with D three days before today; materializing at
# D + 2.5 days and serving today gives every status: fresh rows, rows past their TTL
# (OUTSIDE_MAX_AGE), null values and unknown entities.
START_DAY = (datetime.now(UTC) - timedelta(days=3)).date()
D = datetime_to_micros(datetime(START_DAY.year, START_DAY.month, START_DAY.day, tzinfo=UTC))
END = D + 2 * DAY + DAY // 2


@pytest.fixture(scope="session")
def served_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("served-fraud")
    generate(
        out,
        users=2000,
        merchants=200,
        transactions=4000,
        end=END,
        ttl=2 * DAY,
        start=START_DAY.isoformat(),
    )
    return out


@pytest.fixture(scope="session")
def served_repo(served_data: Path) -> FeatureRepo:
    return dataclasses.replace(load_repo(SAMPLE_REPO), offline_root=str(served_data))


async def load_store(repo: FeatureRepo, url: str, end: int = END) -> None:
    """Materialize every view of ``repo`` up to ``end`` into the store at ``url``."""
    store = open_online_store(url)
    try:
        await materialize(repo, store, plan_window(list(repo.views.values()), 0, end))
    finally:
        await store.close()


def materialize_into(repo: FeatureRepo, url: str, end: int = END) -> None:
    asyncio.run(load_store(repo, url, end))


@pytest.fixture(scope="session")
def sqlite_store(served_repo: FeatureRepo, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The served data in one SQLite file for the whole session, for tests of the process
    around the store (TLS, callers, metrics, logs); they push only keys the data lacks."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite-store') / 'online.db'}"
    materialize_into(served_repo, url)
    return url


@pytest.fixture(params=["sqlite", "redis", "cluster"])
def loaded_store(
    request: pytest.FixtureRequest, served_repo: FeatureRepo, tmp_path: Path
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'online.db'}"
    else:
        url = str(request.getfixturevalue(f"{request.param}_url"))
    materialize_into(served_repo, url)
    return url


async def start_server(
    url: str,
    registry: RegistryConfig | None = None,
    cache: CacheLimits | None = None,
    **overrides: Any,
) -> FerryServer:
    """A started server over the sample repo and the store at ``url`` (and a registry, and a
    near cache), its parts opened as ``ferry serve`` opens them."""
    settings: dict[str, Any] = {"port": 0, "health_interval_s": 0.1, **overrides}
    server = FerryServer(
        ServerConfig(**settings),
        features=open_features(FeaturesConfig(str(SAMPLE_REPO), url, cache)),
        registry=open_registry(registry) if registry is not None else None,
    )
    await server.start()
    return server


@pytest.fixture
async def server(loaded_store: str) -> AsyncIterator[FerryServer]:
    running = await start_server(loaded_store, limits=Limits(max_entity_rows=5_000))
    yield running
    await running.stop(0)


# The MLflow fixtures live in their own module; importing them makes them visible here.
from tests.server.mlflow_fixtures import mlflow_server, sqlite_registry  # noqa: E402, F401

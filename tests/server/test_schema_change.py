"""A view whose features changed, served while its stored rows are of the old schema (and
the other way round): rows carry only their schema's fingerprint, and each server learns
the other's schema from the store (``ferry.stores.schemas``), over gRPC end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ferry.api.types.v1.types_pb2 import FeatureColumn
from ferry.cli.compose import FeaturesConfig, open_features
from ferry.client import AsyncFerryClient
from ferry.core import FeatureRepo, RowCodec, load_repo
from ferry.core.errors import StoreUnavailableError
from ferry.server import FerryServer, ServerConfig
from ferry.server.errors import CorruptStoredRowError
from ferry.server.serving import Catalog, read_features
from ferry.stores.base import ReadRequest, ViewTable, WriteResult
from ferry.stores.schemas import record_schema
from tests.e2e.fraud import SAMPLE_REPO
from tests.server.conftest import load_store

USERS = list(range(1, 201))
OLD_REFS = ["user_stats:txn_count_7d", "user_stats:last_country", "user_stats:risk_embedding"]


def changed_repo(where: Path) -> Path:
    """The sample repo, but user_stats has lost ``last_country`` and gained ``score``."""
    text = SAMPLE_REPO.read_text()
    old = "      last_country: string\n"
    assert old in text
    path = where / "feature_repo.yaml"
    path.write_text(text.replace(old, "      score: double\n"))
    return path


@asynccontextmanager
async def serving(repo_file: Path, url: str) -> AsyncIterator[AsyncFerryClient]:
    server = FerryServer(
        ServerConfig(port=0), features=open_features(FeaturesConfig(str(repo_file), url))
    )
    await server.start()
    try:
        async with AsyncFerryClient(f"127.0.0.1:{server.port}", timeout_s=10) as client:
            yield client
    finally:
        await server.stop(0)


async def features(client: AsyncFerryClient, refs: list[str]) -> dict[str, list[Any]]:
    answer = await client.get_online_features(entities={"user_id": USERS}, features=refs)
    return answer.to_dict(include_status=True, include_event_timestamps=True)


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
async def test_each_schema_reads_the_others_rows(
    backend: str, served_repo: FeatureRepo, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    await load_store(served_repo, url)  # every stored row of the old schema
    new_repo = changed_repo(tmp_path)
    async with serving(SAMPLE_REPO, url) as old, serving(new_repo, url) as new:
        before = await features(old, OLD_REFS)
        assert before["user_stats:txn_count_7d__status"].count("PRESENT") > 50
        kept = ["user_stats:txn_count_7d", "user_stats:risk_embedding"]
        served = await features(new, [*kept, "user_stats:score"])
        # The features both schemas have are served alike; the new one is null in old rows.
        for ref in kept:
            for suffix in ("", "__status", "__event_timestamp"):
                assert served[ref + suffix] == before[ref + suffix]
        statuses = before["user_stats:txn_count_7d__status"]
        assert served["user_stats:score__status"] == [
            "NOT_FOUND" if s == "NOT_FOUND" else "NULL_VALUE" for s in statuses
        ]

        # A push through the new schema: the old server learns it too.
        now = datetime.now(UTC)
        row = {"user_id": 1, "event_timestamp": now, "txn_count_7d": 77, "score": 0.5}
        await new.push("user_stats", [row], missing_features_are_null=True)
        pushed = await features(old, OLD_REFS)
        assert pushed["user_stats:txn_count_7d"][0] == 77
        assert pushed["user_stats:txn_count_7d__status"][0] == "PRESENT"
        assert pushed["user_stats:last_country__status"][0] == "NULL_VALUE"
        assert (await features(new, ["user_stats:score"]))["user_stats:score"][0] == 0.5


class Reads:
    """A store answering the view's read with ``rows``, and its schema reads from
    ``schemas`` (or by raising ``fail``); counts the schema reads."""

    def __init__(self, rows: list[bytes | None], schemas: dict[bytes, bytes], fail: bool = False):
        self.rows, self.schemas, self.fail, self.schema_reads = rows, schemas, fail, 0

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        (request,) = requests
        if not request.table.view.endswith("#schemas"):
            return [self.rows]
        self.schema_reads += 1
        if self.fail:
            raise StoreUnavailableError("the online store did not answer")
        return [[self.schemas.get(key) for key in request.keys]]

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        self.schemas.update(rows)
        return WriteResult(len(rows), 0)


def old_schema_rows(tmp_path: Path) -> tuple[Catalog, list[bytes | None], RowCodec]:
    """A catalog of the changed repo, and two rows of user_stats under the sample's schema."""
    catalog = Catalog(load_repo(changed_repo(tmp_path)))
    old = RowCodec(load_repo(SAMPLE_REPO).view("user_stats").features)
    row = old.encode(5, None, [1, 2.0, 3.0, "GB", True, [0.5]])
    return catalog, [row, None], old


async def test_a_schema_is_read_once_per_process(tmp_path: Path) -> None:
    catalog, rows, old = old_schema_rows(tmp_path)
    store = Reads(rows, {})
    await record_schema(store, catalog.tables["user_stats"], old)  # type: ignore[arg-type]
    plan = catalog.plan_for_refs(["user_stats:txn_count_7d"])
    for _ in range(3):
        (column,) = await read_features(store, plan, {"user_id": [1, 2]})
        assert list(FeatureColumn.FromString(column).values.int64_values.values) == [1, 0]
    assert store.schema_reads == 1


async def test_a_store_that_fails_while_a_schema_is_read_is_unavailable(tmp_path: Path) -> None:
    catalog, rows, _ = old_schema_rows(tmp_path)
    plan = catalog.plan_for_refs(["user_stats:txn_count_7d"])
    with pytest.raises(StoreUnavailableError):
        await read_features(Reads(rows, {}, fail=True), plan, {"user_id": [1, 2]})


async def test_rows_of_a_schema_nobody_recorded_are_named_not_served(tmp_path: Path) -> None:
    catalog, rows, _ = old_schema_rows(tmp_path)
    plan = catalog.plan_for_refs(["user_stats:txn_count_7d"])
    with pytest.raises(CorruptStoredRowError, match=r"'user_stats' for entity \(1\)") as err:
        await read_features(Reads(rows, {}), plan, {"user_id": [1, 2]})
    assert "no record" in str(err.value.__cause__)

"""Every feature type, naive timestamps and an int32 key, through the job and `ferry lookup`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferry.client import FerryClient
from ferry.core import RowCodec, encode_key, load_repo
from ferry.core.timestamps import parse_instant
from ferry.materializer import materialize, plan_window
from ferry.stores import ReadRequest, ViewTable, open_online_store

REPO = """\
project: typed
offline_store: {root: offline}
online_store: sqlite:///online.db
entities:
  thing: {join_keys: {thing_id: int32}}
feature_views:
  things:
    entities: [thing]
    source: {path: things.parquet, timestamp_field: ts}
    features:
      i64: int64
      i32: int32
      f64: double
      f32: float
      flag: bool
      text: string
      blob: bytes
      seen_at: timestamp
      l_i64: list<int64>
      l_i32: list<int32>
      l_f64: list<double>
      l_f32: list<float>
      l_str: list<string>
"""

ROWS = {
    "thing_id": pa.array([1, 1, 2, 3], pa.int32()),
    # Naive timestamps, in nanoseconds: read as UTC and truncated to microseconds.
    "ts": pa.array(
        [datetime(2026, 1, 1, 0, 0), datetime(2026, 1, 2, 0, 0), datetime(2026, 1, 1, 12, 0), None],
        pa.timestamp("ns"),
    ),
    "i64": pa.array([1, 2**62, None, 4], pa.int64()),
    "i32": pa.array([1, -(2**31), 3, 4], pa.int32()),
    "f64": pa.array([0.1, 1e300, None, 0.0], pa.float64()),
    "f32": pa.array([0.5, 1.25, 2.0, None], pa.float32()),
    "flag": pa.array([True, False, None, True]),
    "text": pa.array(["a", "ünïcode", "", None], pa.large_string()),
    "blob": pa.array([b"\x00", b"\xff\x00", None, b""], pa.binary()),
    "seen_at": pa.array(
        [datetime(2025, 1, 1), datetime(2025, 6, 1, 1, 2, 3, 456789), None, None],
        pa.timestamp("us", tz="Europe/Paris"),
    ),
    "l_i64": pa.array([[1], [2, 3], [], None], pa.list_(pa.int64())),
    "l_i32": pa.array([[1], [2, -3], None, []], pa.list_(pa.int32())),
    "l_f64": pa.array([[0.5], [1.5, 2.5], None, None], pa.large_list(pa.float64())),
    "l_f32": pa.array([[0.5], [0.25, 8.0], [1.0], None], pa.list_(pa.float32())),
    "l_str": pa.array([["x"], ["y", "", "zé"], None, []], pa.list_(pa.string())),
}


@pytest.fixture
def repo_file(tmp_path: Path) -> Path:
    (tmp_path / "offline").mkdir()
    pq.write_table(pa.table(ROWS), tmp_path / "offline" / "things.parquet")
    path = tmp_path / "repo.yaml"
    path.write_text(REPO)
    return path


def test_every_type_round_trips_through_the_job(repo_file: Path) -> None:
    repo = load_repo(repo_file)
    view = repo.view("things")
    end = parse_instant("2026-01-03")

    async def run() -> list[bytes | None]:
        store = open_online_store(str(repo.online_store))
        try:
            (report,) = await materialize(repo, store, plan_window([view], 0, end))
            assert (report.rows_read, report.rows_skipped_null_timestamp) == (4, 1)
            assert (report.rows_superseded, report.rows_written) == (1, 2)
            keys = [encode_key([i]) for i in (1, 2, 3)]
            return (await store.read([ReadRequest(ViewTable("typed", "things"), keys)]))[0]
        finally:
            await store.close()

    first, second, third = asyncio.run(run())
    assert third is None
    assert first is not None
    assert second is not None
    codec = RowCodec(view.features)
    one, two = codec.decode(first), codec.decode(second)
    assert one.event_timestamp == parse_instant("2026-01-02T00:00:00Z")
    assert one.created_timestamp is None
    assert list(one.values) == [
        2**62,
        -(2**31),
        1e300,
        1.25,
        False,
        "ünïcode",
        b"\xff\x00",
        parse_instant("2025-06-01T01:02:03.456789Z"),  # pyarrow reads naive input as UTC
        [2, 3],
        [2, -3],
        [1.5, 2.5],
        [0.25, 8.0],
        ["y", "", "zé"],
    ]
    assert list(two.values) == [
        None,
        3,
        None,
        2.0,
        None,
        "",
        None,
        None,
        [],
        None,
        None,
        [1.0],
        None,
    ]


def test_lookup_prints_stored_rows_as_json(repo_file: Path) -> None:
    repo = load_repo(repo_file)

    async def run() -> None:
        store = open_online_store(str(repo.online_store))
        try:
            await materialize(
                repo, store, plan_window([repo.view("things")], 0, parse_instant("2026-01-03"))
            )
        finally:
            await store.close()

    asyncio.run(run())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "lookup",
            str(repo_file),
            "--view",
            "things",
            "--entity",
            "thing_id=1,9",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found, missing = (json.loads(line) for line in done.stdout.splitlines())
    assert missing == {"thing_id": 9, "found": False}
    assert found["event_timestamp"] == "2026-01-02T00:00:00Z"
    assert found["seen_at"] == "2025-06-01T01:02:03.456789Z"
    assert found["blob"] == "/wA="
    assert found["l_str"] == ["y", "", "zé"]


@pytest.mark.parametrize(
    ("entities", "message"),
    [
        (["thing_id=a"], "--entity thing_id: values must be integers (int32)"),
        (["other=1"], "needs --entity for exactly its join keys thing_id; got other"),
        (["thing_id"], "--entity 'thing_id': expected KEY=V1,V2,..."),
    ],
)
def test_lookup_rejects_bad_entities(repo_file: Path, entities: list[str], message: str) -> None:
    args = [a for e in entities for a in ("--entity", e)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "lookup",
            str(repo_file),
            "--view",
            "things",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert message in done.stderr


def test_verify_and_get_agree_on_every_type_with_nan_and_infinities(tmp_path: Path) -> None:
    """verify finds no skew on a consistent store of every type, NaN, infinities, empty
    lists and nulls included (NaN served for NaN expected is a match; a timestamp is an
    instant), and its and ``ferry get --json``'s lines are strict JSON."""
    extra = {
        "thing_id": [4],
        "ts": [datetime(2026, 1, 1, 6, 0)],
        "f64": [float("nan")],
        "f32": [float("inf")],
        "l_f64": [[float("nan"), float("-inf"), 1.0]],
        "l_f32": [[float("-inf")]],
    }
    table = pa.table(ROWS)
    row = {name: extra.get(name, [None]) for name in table.column_names}
    table = pa.concat_tables([table, pa.table(row, schema=table.schema)])
    (tmp_path / "offline").mkdir()
    pq.write_table(table, tmp_path / "offline" / "things.parquet")
    repo_file = tmp_path / "repo.yaml"
    repo_file.write_text(REPO)
    ferry = [sys.executable, "-m", "ferry.cli.main"]
    subprocess.run(
        [*ferry, "materialize", str(repo_file), "--start", "2025-01-01", "--end", "2026-01-03"],
        check=True,
        capture_output=True,
    )

    def no_constants(name: str) -> None:
        raise AssertionError(f"not strict JSON: {name}")

    with serving(repo_file) as target:
        verify = [*ferry, "verify", str(repo_file), "--target", target, "--at", "2026-01-03"]
        done = subprocess.run(verify, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(done.stdout.splitlines()[-1], parse_constant=no_constants)
        assert summary["mismatches"] == 0
        assert summary["values_compared"] == 4 * 13  # 4 things, 13 features
        get = [*ferry, "get", "--target", target, "--features", "things:*", "--json"]
        done = subprocess.run(
            [*get, "--entity", "thing_id=4,1"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        four = json.loads(done.stdout.splitlines()[0], parse_constant=no_constants)
        assert four["things:f64"]["value"] == "NaN"
        assert four["things:f32"]["value"] == "Infinity"
        assert four["things:l_f64"]["value"] == ["NaN", "-Infinity", 1.0]


@contextmanager
def serving(repo_file: Path) -> Iterator[str]:
    """``ferry serve`` of ``repo_file`` on a free loopback port; yields HOST:PORT."""
    server = subprocess.Popen(
        [sys.executable, "-m", "ferry.cli.main", "serve", str(repo_file), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield json.loads(server.stdout.readline())["address"]
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()


def test_every_type_comes_back_typed_in_every_shape(repo_file: Path) -> None:
    """.values, to_dict(), to_arrow() and to_pandas() agree: entity keys first, timestamps
    as UTC datetimes, lists as lists, missing integers and booleans as pandas NA."""
    import pandas as pd

    materialize_cli = [sys.executable, "-m", "ferry.cli.main", "materialize", str(repo_file)]
    subprocess.run(
        [*materialize_cli, "--start", "2025-01-01", "--end", "2026-01-03"],
        check=True,
        capture_output=True,
    )
    seen_at = datetime(2025, 6, 1, 1, 2, 3, 456789, tzinfo=UTC)
    with serving(repo_file) as target, FerryClient(target) as client:
        result = client.get_online_features(
            entities=pd.DataFrame({"thing_id": np.array([1, 2, 3], np.int32)}),
            features=["things:i64", "things:flag", "things:seen_at", "things:l_i64"],
        )
    assert result["things:seen_at"].values == [seen_at, None, None]
    assert result["things:i64"].event_timestamps == [
        datetime(2026, 1, 2, tzinfo=UTC),
        datetime(2026, 1, 1, 12, tzinfo=UTC),
        None,
    ]
    assert result.to_dict() == {
        "thing_id": [1, 2, 3],
        "things:i64": [2**62, None, None],
        "things:flag": [False, None, None],
        "things:seen_at": [seen_at, None, None],
        "things:l_i64": [[2, 3], [], None],
    }
    table = result.to_arrow(include_status=True)
    assert table.column_names == [
        "thing_id",
        "things:i64",
        "things:i64__status",
        "things:flag",
        "things:flag__status",
        "things:seen_at",
        "things:seen_at__status",
        "things:l_i64",
        "things:l_i64__status",
    ]
    assert table.schema.field("thing_id").type == pa.int32()
    assert table.schema.field("things:seen_at").type == pa.timestamp("us", tz="UTC")
    assert table["things:i64__status"].to_pylist() == ["PRESENT", "NULL_VALUE", "NOT_FOUND"]

    frame = result.to_pandas(include_event_timestamps=True)
    assert list(frame.columns[:2]) == ["thing_id", "things:i64"]
    assert str(frame["things:i64"].dtype) == "Int64"
    assert frame["things:i64"][0] == 2**62  # exact: no detour through float64
    assert frame["things:i64"].isna().tolist() == [False, True, True]
    assert str(frame["things:flag"].dtype) == "boolean"
    assert str(frame["things:seen_at"].dtype) == "datetime64[us, UTC]"
    assert frame["things:seen_at"][0] == pd.Timestamp(seen_at)
    assert frame["things:l_i64"].tolist()[:2] == [[2, 3], []]
    assert frame["things:i64__event_timestamp"][0] == pd.Timestamp("2026-01-02", tz="UTC")
    assert pd.isna(frame["things:i64__event_timestamp"][2])

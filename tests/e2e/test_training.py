"""Training frames against a brute-force oracle on the fraud data set."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferry.client.training import EVENT_TIMESTAMP_SUFFIX, get_training_frame
from ferry.core import (
    FeatureRepo,
    InvalidValueError,
    UnknownFeatureError,
    UnknownFeatureServiceError,
    load_repo,
)
from tests.e2e.fraud import DAY, SAMPLE_REPO, as_stored, generate, source_rows

END = 1_767_398_400_000_000  # 2026-01-03T00:00:00Z, within the data's days


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fraud-training")
    generate(out, users=2000, merchants=200, transactions=4000, end=END, ttl=2 * DAY)
    return out


@pytest.fixture(scope="module")
def repo(data: Path) -> FeatureRepo:
    return dataclasses.replace(load_repo(SAMPLE_REPO), offline_root=str(data))


def brute_force(
    repo: FeatureRepo, view_name: str, keys: tuple[Any, ...], at: int | None
) -> dict[str, Any] | None:
    view = repo.view(view_name)
    best, best_order = None, None
    if at is None or None in keys:
        return None
    for row in _rows_by_key(repo, view_name).get(keys, []):
        event = row["event_timestamp"]
        if event is None or event > at:
            continue
        if view.ttl_micros is not None and event <= at - view.ttl_micros:
            continue
        order = (event, row["created_timestamp"])
        if best_order is None or order > best_order:
            best, best_order = row, order
    return best


_CACHE: dict[tuple[int, str], dict[tuple[Any, ...], list[dict[str, Any]]]] = {}


def _rows_by_key(repo: FeatureRepo, view_name: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    cache_key = (id(repo), view_name)
    if cache_key not in _CACHE:
        view = repo.view(view_name)
        grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for row in source_rows(repo, view):
            grouped.setdefault(tuple(row[k] for k in view.join_key_names), []).append(row)
        _CACHE[cache_key] = grouped
    return _CACHE[cache_key]


def check_frame(repo: FeatureRepo, entities: pa.Table, frame: pa.Table, service: str) -> int:
    refs = repo.service(service).refs
    rows = frame.to_pylist()
    times = entities["event_timestamp"].cast(pa.int64()).to_pylist()
    matched = 0
    for i, row in enumerate(rows):
        for view_name in dict.fromkeys(r.view for r in refs):
            view = repo.view(view_name)
            keys = tuple(row[k] for k in view.join_key_names)
            want = brute_force(repo, view_name, keys, times[i])
            got_time = row[view_name + EVENT_TIMESTAMP_SUFFIX]
            if want is None:
                assert got_time is None, (i, view_name)
            else:
                matched += 1
                assert int(got_time.timestamp() * 1e6) == want["event_timestamp"], (i, view_name)
            for ref in (r for r in refs if r.view == view_name):
                expected = (
                    None
                    if want is None
                    else as_stored(view.feature(ref.feature).type, want[ref.feature])
                )
                assert row[str(ref)] == expected, (i, str(ref))
    return matched


@pytest.mark.parametrize("batch_rows", [65_536, 97])
def test_training_frame_matches_the_oracle(repo: FeatureRepo, data: Path, batch_rows: int) -> None:
    entities = pq.read_table(data / "transactions.parquet")
    frame = get_training_frame(
        repo,
        entities,
        feature_service="fraud_v2",
        include_event_timestamps=True,
        batch_rows=batch_rows,
    )
    assert frame.num_rows == entities.num_rows
    assert frame.select(entities.column_names).equals(entities)  # order and labels kept
    assert check_frame(repo, entities, frame, "fraud_v2") > entities.num_rows
    counts = frame["user_stats:txn_count_7d"].to_pylist()
    assert any(c is not None and c >= 1000 for c in counts), "re-stated rows are exercised"
    assert frame["user_stats:avg_txn_amount"].null_count > 0


def test_edges_null_keys_and_times_keep_their_rows(repo: FeatureRepo) -> None:
    at = END
    entities = pa.table(
        {
            "user_id": pa.array([990_001, 990_002, 990_003, None, 1, 1], pa.int64()),
            # naive timestamps: read as UTC
            "event_timestamp": pa.array([at, at, at, at, None, at], pa.timestamp("us")),
            "label": [True, False, True, False, True, False],
        }
    )
    frame = get_training_frame(
        repo, entities, features=["user_stats:txn_count_7d"], include_event_timestamps=True
    )
    got = frame["user_stats:txn_count_7d"].to_pylist()
    # Edge users: event == at - ttl is too old, event == at matches, at + 1 µs is too new.
    assert got[0] is None
    assert got[1] is not None
    assert got[2] is None
    assert got[3] is None  # null key
    assert got[4] is None  # null time
    assert got[5] is not None
    assert frame["label"].to_pylist() == entities["label"].to_pylist()


def test_a_pandas_entity_frame_works_too(repo: FeatureRepo, data: Path) -> None:
    entities = pq.read_table(data / "transactions.parquet").slice(0, 50)
    from_arrow = get_training_frame(repo, entities, feature_service="fraud_v1")
    from_pandas = get_training_frame(repo, entities.to_pandas(), feature_service="fraud_v1")
    # pandas turns strings into large_string; the values are what matters.
    assert from_pandas.to_pylist() == from_arrow.to_pylist()


def test_bad_training_requests(repo: FeatureRepo) -> None:
    entities = pa.table({"user_id": [1], "event_timestamp": pa.array([END], pa.timestamp("us"))})
    with pytest.raises(UnknownFeatureServiceError):
        get_training_frame(repo, entities, feature_service="nope")
    with pytest.raises(InvalidValueError, match="lacks join key 'merchant_id' of feature view"):
        get_training_frame(repo, entities, features=["merchant_stats:category"])
    with pytest.raises(InvalidValueError, match="no timestamp column 'ts'"):
        get_training_frame(repo, entities, features=["user_stats:*"], timestamp_column="ts")
    with pytest.raises(InvalidValueError, match="exactly one of"):
        get_training_frame(repo, entities)
    # Each of these was a pyarrow exception (or a frame with two columns of one name):
    # the rules are serving's (a feature asked twice) and the view's (a key's type).
    with pytest.raises(UnknownFeatureError, match="features requested twice: user_stats:is_pr"):
        get_training_frame(repo, entities, features=["user_stats:*", "user_stats:is_premium"])
    text_keys = entities.set_column(0, "user_id", pa.array(["1"]))
    with pytest.raises(InvalidValueError, match="column 'user_id' is string; feature view 'user"):
        get_training_frame(repo, text_keys, features=["user_stats:*"])
    labelled = entities.append_column("user_stats:is_premium", pa.array([True]))
    with pytest.raises(InvalidValueError, match="already has a column named 'user_stats:is_pr"):
        get_training_frame(repo, labelled, features=["user_stats:is_premium"])
    stamped = entities.append_column("user_stats:__event_timestamp", pa.array([1]))
    with pytest.raises(InvalidValueError, match="named 'user_stats:__event_timestamp'"):
        get_training_frame(
            repo, stamped, features=["user_stats:is_premium"], include_event_timestamps=True
        )
    narrow = entities.set_column(0, "user_id", pa.array([1], pa.int32()))
    assert get_training_frame(repo, narrow, features=["user_stats:*"]).num_rows == 1


def test_training_frame_cli(repo: FeatureRepo, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "training-frame",
            str(SAMPLE_REPO),
            "--offline-root",
            str(data),
            "--entities",
            str(data / "transactions.parquet"),
            "--feature-service",
            "fraud_v1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == 4000
    frame = pq.read_table(out)
    assert frame.num_rows == 4000
    assert "merchant_stats:category" in frame.column_names
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "training-frame",
            str(SAMPLE_REPO),
            "--offline-root",
            str(data),
            "--entities",
            str(tmp_path / "none.parquet"),
            "--feature-service",
            "fraud_v1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "none.parquet" in bad.stderr
    (tmp_path / "junk.parquet").write_bytes(b"\x00\x01")
    for entities, out_path, said in [
        (tmp_path / "junk.parquet", out, "cannot read the entity table "),
        (data / "transactions.parquet", tmp_path / "no" / "t.parquet", "cannot write --out "),
        (data / "transactions.parquet", tmp_path, "cannot write --out "),
    ]:
        failed = subprocess.run(
            [
                *[sys.executable, "-m", "ferry.cli.main", "training-frame", str(SAMPLE_REPO)],
                *["--offline-root", str(data), "--entities", str(entities)],
                *["--feature-service", "fraud_v1", "--out", str(out_path)],
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert failed.returncode == 1
        assert failed.stderr.startswith(f"ferry training-frame: error: {said}"), failed.stderr
        assert "Traceback" not in failed.stderr
    assert not list(tmp_path.parent.glob("*.partial"))  # the partial file is removed
    assert not list(tmp_path.glob("*.partial"))

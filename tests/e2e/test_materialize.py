"""End to end through the CLI: the fraud data set into SQLite and Redis, checked against an
oracle written straight from the as-of rule."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferry.core import FeatureRepo, RowCodec, encode_key, load_repo
from ferry.core.timestamps import parse_instant
from ferry.stores import ReadRequest, ViewTable, open_online_store
from tests.e2e.fraud import (
    DAY,
    EDGE_AT_END,
    EDGE_TOO_NEW,
    EDGE_TOO_OLD,
    SAMPLE_REPO,
    all_keys,
    check_stored,
    damage_a_page,
    generate,
    oracle,
    source_rows,
)
from tests.services import MotoServer, RedisServer, free_port, start_redis, upload_to_s3

END0 = parse_instant("2026-01-02T12:00:00Z")
END1 = parse_instant("2026-01-03T12:00:00Z")
END2 = parse_instant("2026-01-04T06:00:00Z")
BACKENDS = ["sqlite", "redis", "cluster", "dynamodb"]
Snapshot = dict[str, dict[bytes, bytes | None]]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fraud")
    generate(out, users=2000, merchants=200, transactions=4000, end=END1, ttl=2 * DAY)
    return out


@pytest.fixture(scope="module")
def repo(data: Path) -> FeatureRepo:
    loaded = load_repo(SAMPLE_REPO)
    return FeatureRepo(**{**loaded.__dict__, "offline_root": str(data)})


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'online.db'}"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def offline_root(request: pytest.FixtureRequest, store_url: str, data: Path) -> str:
    """The data's offline root: local, or the same files on S3 (moto) for DynamoDB, so the
    production pairing (S3 into DynamoDB) meets the same oracle as the others."""
    if store_url.startswith("dynamodb://"):
        return str(request.getfixturevalue("s3_data"))
    return str(data)


@pytest.fixture(scope="module")
def s3_data(data: Path, moto_server: MotoServer) -> str:
    return upload_to_s3(data, moto_server, f"fraud-{uuid.uuid4().hex[:8]}")


def ferry(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "ferry.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def materialize(
    data: Path | str, url: str, *args: str, repo_file: Path = SAMPLE_REPO
) -> list[dict[str, Any]]:
    done = ferry(
        args[0], str(repo_file), "--offline-root", str(data), "--online-store", url, *args[1:]
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def snapshot(repo: FeatureRepo, url: str) -> Snapshot:
    async def read() -> Snapshot:
        store = open_online_store(url)
        try:
            out: Snapshot = {}
            for view in repo.views.values():
                keys = [*all_keys(repo, view), encode_key([-1] * len(view.join_keys))]
                (rows,) = await store.read([ReadRequest(ViewTable(repo.project, view.name), keys)])
                out[view.name] = dict(zip(keys, rows, strict=True))
            return out
        finally:
            await store.close()

    return asyncio.run(read())


def watermarks(repo: FeatureRepo, url: str) -> dict[str, int]:
    async def read() -> dict[str, int]:
        store = open_online_store(url)
        try:
            return await store.read_watermarks(repo.project, list(repo.views))
        finally:
            await store.close()

    return asyncio.run(read())


def check_report(line: dict[str, Any]) -> None:
    assert 0 <= line["rows_after_end"] <= line["rows_outside_window"]
    assert line["rows_read"] == (
        line["rows_in_window"] + line["rows_outside_window"] + line["rows_skipped_null_timestamp"]
    )
    assert line["rows_in_window"] == (
        line["rows_skipped_null_key"]
        + line["rows_superseded"]
        + line["rows_written"]
        + line["rows_skipped_not_newer"]
    )


def test_materialize_then_incremental_then_an_older_window(
    offline_root: str, repo: FeatureRepo, store_url: str
) -> None:
    # 1. A full window up to END1 equals the oracle, for every entity of every view.
    lines = materialize(
        offline_root,
        store_url,
        "materialize",
        "--start",
        "2025-12-01",
        "--end",
        "2026-01-03T12:00:00Z",
    )
    by_view = {line["view"]: line for line in lines if line["kind"] == "view"}
    assert set(by_view) == set(repo.views)
    for line in lines:
        check_report(line)
    assert by_view["user_stats"]["rows_skipped_null_key"] == 2
    assert by_view["user_stats"]["rows_skipped_null_timestamp"] == 1
    # The third snapshot (and EDGE_TOO_NEW) lies past END1 in row groups that are read.
    assert by_view["user_stats"]["rows_after_end"] > 0
    total = lines[-1]
    assert total["kind"] == "total"
    assert total["rows_written"] == sum(line["rows_written"] for line in by_view.values())
    first = snapshot(repo, store_url)
    for view in repo.views.values():
        check_stored(view, oracle(repo, view, END1), first[view.name])
    users = first["user_stats"]
    assert users[encode_key([EDGE_TOO_OLD])] is None
    assert users[encode_key([EDGE_AT_END])] is not None
    assert users[encode_key([EDGE_TOO_NEW])] is None
    # The data exercises the rule's corners: re-stated rows (same event time, later created
    # time, txn_count_7d + 1000) won where they are the as-of row, and nulls are stored.
    codec = RowCodec(repo.view("user_stats").features)
    decoded = [codec.decode(v) for v in users.values() if v is not None]
    restated = _restated_users(repo)
    assert any(row.values[0] >= 1000 for row in decoded)
    assert sum(row.values[0] >= 1000 for row in decoded) <= len(restated)
    assert any(None in row.values for row in decoded)
    assert watermarks(repo, store_url) == dict.fromkeys(repo.views, END1)

    # 2. Incremental to END2: keys with rows in [END1, END2] move to the oracle at END2,
    #    always forwards; every other key is untouched.
    materialize(offline_root, store_url, "materialize-incremental", "--end", "2026-01-04T06:00:00Z")
    second = snapshot(repo, store_url)
    changed = 0
    for view in repo.views.values():
        codec = RowCodec(view.features)
        fresh = oracle(repo, view, END2)
        moved = _keys_with_rows_between(repo, view.name, END1, END2)
        check_stored(
            view,
            {k: v for k, v in fresh.items() if k in moved},
            {k: v for k, v in second[view.name].items() if k in moved},
        )
        for key, before in first[view.name].items():
            after = second[view.name][key]
            if key not in moved:
                assert after == before
            elif before is not None and after != before:
                assert after is not None
                old, new = codec.decode(before), codec.decode(after)
                assert (new.event_timestamp, new.created_timestamp or 0) > (
                    old.event_timestamp,
                    old.created_timestamp or 0,
                )
                changed += 1
    assert changed > 0
    assert watermarks(repo, store_url) == dict.fromkeys(repo.views, END2)

    # 3. An older window again: no stored row changes (the only writes are keys the store
    #    did not hold, e.g. EDGE_TOO_OLD, whose row is the as-of row at END0), and the
    #    watermarks stay.
    lines = materialize(
        offline_root,
        store_url,
        "materialize",
        "--start",
        "2025-12-01",
        "--end",
        "2026-01-02T12:00:00Z",
    )
    assert lines[-1]["rows_skipped_not_newer"] > 0
    third = snapshot(repo, store_url)
    added = 0
    for view_name, rows in second.items():
        for key, before in rows.items():
            if before is not None:
                assert third[view_name][key] == before
            elif third[view_name][key] is not None:
                added += 1
    assert lines[-1]["rows_written"] == added
    assert third["user_stats"][encode_key([EDGE_TOO_OLD])] is not None
    assert watermarks(repo, store_url) == dict.fromkeys(repo.views, END2)


def _restated_users(repo: FeatureRepo) -> set[int]:
    seen: dict[tuple[int, int], int] = {}
    for row in source_rows(repo, repo.view("user_stats")):
        key = (row["user_id"], row["event_timestamp"])
        seen[key] = seen.get(key, 0) + 1
    return {user for (user, _), count in seen.items() if count > 1 and user is not None}


def _keys_with_rows_between(repo: FeatureRepo, view_name: str, start: int, end: int) -> set[bytes]:
    view = repo.view(view_name)
    ttl = view.ttl_micros
    return {
        encode_key([row[k] for k in view.join_key_names])
        for row in source_rows(repo, view)
        if None not in [row[k] for k in view.join_key_names]
        and row["event_timestamp"] is not None
        and start <= row["event_timestamp"] <= end
        and (ttl is None or row["event_timestamp"] > end - ttl)
    }


def test_batches_smaller_than_the_data_give_the_same_rows(
    data: Path, repo: FeatureRepo, tmp_path: Path
) -> None:
    """Every key's rows spread over many batches of 97 rows: holding them all writes each
    key once, holding up to 50 (the bound hit again and again) or none writes more, and the
    stored rows are the oracle's every time."""
    written = {}
    for held in ("262144", "50", "0"):
        url = f"sqlite:///{tmp_path / f'small-{held}.db'}"
        lines = materialize(
            data,
            url,
            "materialize",
            "--start",
            "2025-12-01",
            "--end",
            "2026-01-03T12:00:00Z",
            "--batch-rows",
            "97",
            "--max-held-rows",
            held,
        )
        stored = snapshot(repo, url)
        for view in repo.views.values():
            check_stored(view, oracle(repo, view, END1), stored[view.name])
        for line in lines[:-1]:
            check_report(line)
        written[held] = {line["view"]: line["rows_written"] for line in lines[:-1]}
        if held == "262144":
            keys = {
                name: sum(r is not None for r in rows.values()) for name, rows in stored.items()
            }
            assert written[held] == keys  # each stored key written once
    for view in repo.views:
        assert written["262144"][view] <= written["50"][view] <= written["0"][view]
    assert sum(written["0"].values()) > sum(written["262144"].values())


# -- bad inputs ----------------------------------------------------------------------------


def materialize_window(root: Path, url: str) -> subprocess.CompletedProcess[str]:
    """``ferry materialize`` of the data's window from ``root`` into ``url``, unchecked."""
    window = ["--start", "2025-12-01", "--end", "2026-01-03"]
    materialize = ["materialize", str(SAMPLE_REPO), "--offline-root", str(root)]
    return ferry(*materialize, "--online-store", url, *window, check=False)


def _broken_copy(data: Path, tmp_path: Path, change: str) -> Path:
    """A copy of the offline store whose merchant_stats source is altered."""
    out = tmp_path / "offline"
    for view in ("user_stats", "user_merchant_stats", "merchant_stats"):
        (out / view).mkdir(parents=True)
        parts = sorted((data / view).glob("*.parquet"))
        for part in parts:
            table = pq.read_table(part)
            if view == "merchant_stats" and change == "drop":
                table = table.drop_columns(["category"])
            if view == "merchant_stats" and change == "retype":
                table = table.set_column(
                    table.schema.get_field_index("txn_count_1d"),
                    "txn_count_1d",
                    table["txn_count_1d"].cast(pa.float64()),
                )
            pq.write_table(table, out / view / part.name)
    # Odd files sort after the real parts, so the first file's schema looks fine.
    odd = out / "merchant_stats" / "part-zzzzz.parquet"
    if change in ("empty", "text"):
        odd.write_bytes(b"" if change == "empty" else b"not parquet at all\n")
    if change == "null_element":
        users = sorted((out / "user_stats").glob("part-*.parquet"))[-1]
        table = pq.read_table(users)
        index = table.schema.get_field_index("risk_embedding")
        lists = table["risk_embedding"].to_pylist()
        lists[3] = [0.5, None, 1.5]
        column = pa.array(lists, table.schema.field(index).type)
        pq.write_table(table.set_column(index, "risk_embedding", column), users)
    if change == "late_retype":
        table = pq.read_table(sorted((data / "merchant_stats").glob("*.parquet"))[-1])
        index = table.schema.get_field_index("txn_count_1d")
        pq.write_table(table.set_column(index, "txn_count_1d", table[index].cast("float64")), odd)
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "drop",
            "view 'merchant_stats': source {root}/merchant_stats: has no column 'category' "
            "(feature)",
        ),
        (
            "retype",
            "view 'merchant_stats': source {root}/merchant_stats: column 'txn_count_1d' "
            "(feature) is double, expected int64",
        ),
        (
            "late_retype",
            "view 'merchant_stats': source file {root}/merchant_stats/part-zzzzz.parquet: "
            "column 'txn_count_1d' (feature) is double, expected int64",
        ),
        (
            "null_element",
            "column 'risk_embedding' (feature) holds a null inside a list (row 3 of row group 0)",
        ),
        (
            "empty",
            "view 'merchant_stats': source file {root}/merchant_stats/part-zzzzz.parquet: not "
            "a readable Parquet file",
        ),
        (
            "text",
            "view 'merchant_stats': source file {root}/merchant_stats/part-zzzzz.parquet: not "
            "a readable Parquet file",
        ),
    ],
)
def test_a_source_that_does_not_match_writes_nothing(
    data: Path, repo: FeatureRepo, tmp_path: Path, change: str, message: str
) -> None:
    broken = _broken_copy(data, tmp_path, change)
    url = f"sqlite:///{tmp_path / 'online.db'}"
    done = materialize_window(broken, url)
    assert done.returncode == 1
    assert message.format(root=broken) in done.stderr
    assert done.stdout == ""
    assert all(v is None for rows in snapshot(repo, url).values() for v in rows.values())
    done = ferry("validate", str(SAMPLE_REPO), "--offline-root", str(broken), check=False)
    assert done.returncode == 1
    assert message.format(root=broken) in done.stderr


def test_a_damaged_page_fails_the_job_naming_file_and_row_group(data: Path, tmp_path: Path) -> None:
    """4 KB of random bytes inside a data page: the page checksum catches it (it decoded to
    wrong values, exit 0, before), and the job fails with the file and row group named."""
    broken = _broken_copy(data, tmp_path, "none")
    part = sorted((broken / "user_stats").glob("part-*.parquet"))[0]
    damage_a_page(part)
    done = materialize_window(broken, f"sqlite:///{tmp_path / 'online.db'}")
    assert done.returncode == 1
    assert f"source file {part}, row group " in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_missing_source(data: Path, tmp_path: Path) -> None:
    done = ferry(
        "validate", str(SAMPLE_REPO), "--offline-root", str(tmp_path / "nowhere"), check=False
    )
    assert done.returncode == 1
    for view in ("user_stats", "merchant_stats", "user_merchant_stats"):
        assert f"source {tmp_path / 'nowhere'}/{view} does not exist" in done.stderr


def test_a_link_out_of_the_offline_root_is_refused(data: Path, tmp_path: Path) -> None:
    """The repo file's check reads a source path's text; a symbolic link below the root (to
    a source folder, or to one file of it) led out of it all the same."""
    root = tmp_path / "root"
    (root / "user_stats").mkdir(parents=True)
    part = sorted((data / "user_stats").glob("*.parquet"))[0]
    (root / "user_stats" / "part.parquet").symlink_to(part)
    (root / "merchant_stats").symlink_to(data / "merchant_stats")
    shutil.copytree(data / "user_merchant_stats", root / "user_merchant_stats")
    (root / "user_merchant_stats" / "inside.parquet").symlink_to(
        next((root / "user_merchant_stats").glob("*.parquet"))
    )
    done = ferry("validate", str(SAMPLE_REPO), "--offline-root", str(root), check=False)
    assert done.returncode == 1
    assert f"source {root / 'user_stats' / 'part.parquet'} leads to {part} through a" in done.stderr
    assert (
        f"source {root / 'merchant_stats'} leads to {data / 'merchant_stats'} through a symbolic"
        in done.stderr
    )
    assert "user_merchant_stats" not in done.stderr  # a link that stays inside is fine
    assert "2 problem(s)" in done.stderr
    database = tmp_path / "online.db"
    done = materialize_window(root, f"sqlite:///{database}")
    assert done.returncode == 1
    assert "outside the offline root" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_accepts_the_sample(data: Path) -> None:
    done = ferry("validate", str(SAMPLE_REPO), "--offline-root", str(data))
    assert "every source matches" in done.stdout


def test_validate_lists_every_problem_of_a_broken_repo(tmp_path: Path) -> None:
    broken = tmp_path / "repo.yaml"
    broken.write_text(
        SAMPLE_REPO.read_text()
        .replace("ttl: 2d", "ttl: soon")
        .replace("txn_count_1d: int64", "txn_count_1d: integer")
    )
    done = ferry("validate", str(broken), check=False)
    assert done.returncode == 1
    assert f"{broken}:23: feature_views.user_stats.ttl: 'soon' is not a duration" in done.stderr
    assert (
        f"{broken}:41: feature_views.merchant_stats.features.txn_count_1d: expected a type"
        in done.stderr
    )


def test_an_unreachable_store_fails_fast_with_one_message(data: Path) -> None:
    started = time.monotonic()
    done = ferry(
        "materialize",
        str(SAMPLE_REPO),
        "--offline-root",
        str(data),
        "--online-store",
        f"redis://127.0.0.1:{free_port()}/0",
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-03",
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("ferry materialize: error: redis at 127.0.0.1:")
    assert "is unreachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["materialize", "--start", "2026-01-05", "--end", "2026-01-01"],
            "--start 2026-01-05T00:00:00Z is after --end 2026-01-01T00:00:00Z",
        ),
        (
            ["materialize", "--start", "yesterday", "--end", "2026-01-01"],
            "'yesterday' is not an ISO 8601 instant",
        ),
        (
            ["materialize", "--start", "2026-01-01", "--end", "2026-01-02", "--views", "nope"],
            "unknown feature view 'nope'",
        ),
        (
            ["materialize-incremental", "--end", "2026-01-01", "--online-store", "mysql://x"],
            "unsupported scheme 'mysql'",
        ),
        (
            ["materialize-incremental", "--end", "now", "--offline-root", "gs://bucket/data"],
            "--offline-root 'gs://bucket/data': the offline store is a local folder or s3://",
        ),
        (
            ["materialize", "--start", "2026-01-01", "--end", "9999-12-31T23:59:59Z"],
            "--end 9999-12-31T23:59:59Z is in the future (more than 300 s ahead",
        ),
        (
            ["materialize-incremental", "--end", "2999-01-01"],
            "--end 2999-01-01T00:00:00Z is in the future",
        ),
        (
            ["materialize-incremental", "--end", "2026-01-01", "--online-store", "redis://h:x/0"],
            "online store URL 'redis://h:x/0': Port could not be cast to integer value",
        ),
    ],
)
def test_bad_arguments(data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    url = (
        ["--online-store", f"sqlite:///{tmp_path / 'x.db'}"] if "--online-store" not in args else []
    )
    done = ferry(
        args[0], str(SAMPLE_REPO), "--offline-root", str(data), *args[1:], *url, check=False
    )
    assert done.returncode == 1
    assert message in done.stderr


def test_incremental_needs_a_watermark_or_a_ttl(data: Path, tmp_path: Path) -> None:
    no_ttl = tmp_path / "repo.yaml"
    no_ttl.write_text(SAMPLE_REPO.read_text().replace("    ttl: 30d\n", ""))
    url = f"sqlite:///{tmp_path / 'online.db'}"
    done = ferry(
        "materialize-incremental",
        str(no_ttl),
        "--offline-root",
        str(data),
        "--online-store",
        url,
        "--end",
        "2026-01-03",
        check=False,
    )
    assert done.returncode == 1
    assert "view 'user_merchant_stats' has no watermark and no ttl" in done.stderr
    # Nothing was written for the other views either: plans are checked before any write.
    assert watermarks(load_repo(no_ttl), url) == {}
    materialize(
        data,
        url,
        "materialize",
        "--start",
        "2025-12-01",
        "--end",
        "2026-01-02",
        "--views",
        "user_merchant_stats",
        repo_file=no_ttl,
    )
    lines = materialize(
        data, url, "materialize-incremental", "--end", "2026-01-03", repo_file=no_ttl
    )
    assert [line["view"] for line in lines[:-1]] == list(load_repo(no_ttl).views)


def test_a_killed_run_is_simply_run_again(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    big = tmp_path / "big"
    generate(big, users=40_000, merchants=500, transactions=2000, end=END1, ttl=2 * DAY)
    repo = load_repo(SAMPLE_REPO)
    repo = FeatureRepo(**{**repo.__dict__, "offline_root": str(big)})
    window = [
        "--start",
        "2025-12-01",
        "--end",
        "2026-01-03T12:00:00Z",
        "--views",
        "user_stats",
        "--batch-rows",
        "500",
    ]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "materialize",
            str(SAMPLE_REPO),
            "--offline-root",
            str(big),
            "--online-store",
            redis_url,
            *window,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while int(redis_server.cli("dbsize")) < 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    written = int(redis_server.cli("dbsize"))
    assert 0 < written < 40_000
    assert watermarks(repo, redis_url) == {}
    lines = materialize(big, redis_url, "materialize", *window)
    assert lines[0]["rows_written"] + lines[0]["rows_skipped_not_newer"] >= 40_000
    view = repo.view("user_stats")
    check_stored(view, oracle(repo, view, END1), snapshot(repo, redis_url)["user_stats"])
    assert watermarks(repo, redis_url) == {"user_stats": END1}


def test_a_store_stalled_past_its_timeout_fails_the_job_cleanly(data: Path, tmp_path: Path) -> None:
    """Redis holding every write (CLIENT PAUSE WRITE) for longer than the command timeout,
    with several batches in flight: one error line, every task the job started awaited or
    cancelled (no "Task exception was never retrieved"), exit 1, no watermark moved."""
    redis = start_redis(tmp_path)
    try:
        redis.cli("client", "pause", "9000", "WRITE")  # reads (watermarks) still answer
        done = ferry(
            "materialize",
            str(SAMPLE_REPO),
            "--offline-root",
            str(data),
            "--online-store",
            redis.url,
            "--start",
            "2025-12-01",
            "--end",
            "2026-01-04",
            "--batch-rows",
            "500",
            check=False,
        )
        redis.cli("client", "unpause")
        assert done.returncode == 1
        assert done.stderr.startswith("ferry materialize: error: redis at 127.0.0.1:")
        assert "no reply within" in done.stderr
        assert "never retrieved" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert watermarks(load_repo(SAMPLE_REPO), redis.url) == {}
    finally:
        redis.stop()

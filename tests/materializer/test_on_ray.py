"""``ferry materialize --ray --shards N`` against a real Ray cluster on loopback (``ray start
--head``, token authentication on): with a worker SIGKILLed mid-task the shard is retried
and the store ends exactly as one run leaves it; a shard that fails on every attempt fails
the run with its own error and moves no watermark; an unreachable cluster and bad
arguments get one clear message."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.core import FeatureRepo, load_repo
from ferry.core.timestamps import format_micros, parse_instant
from tests.e2e.fraud import ROOT, SAMPLE_REPO, check_stored, damage_a_page, oracle
from tests.e2e.test_materialize import snapshot, watermarks
from tests.services import RayCluster, free_port, start_ray

END = parse_instant("2026-01-03T12:00:00Z")
WINDOW = ["--start", "2025-12-01", "--end", format_micros(END)]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    cluster = start_ray(tmp_path_factory.mktemp("ray"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough fraud data in small row groups that four shards each take a while."""
    out = tmp_path_factory.mktemp("ray-data") / "data"
    sizes = ["--users", "20000", "--merchants", "500", "--transactions", "2000"]
    script = [sys.executable, str(ROOT / "datasets" / "fraud.py"), str(out), *sizes]
    subprocess.run([*script, "--row-group", "1000"], check=True, capture_output=True)
    return out


def repo_of(data: Path) -> FeatureRepo:
    return dataclasses.replace(load_repo(SAMPLE_REPO), offline_root=str(data))


def ferry_args(data: Path, url: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ferry.cli.main",
        "materialize",
        str(SAMPLE_REPO),
        "--offline-root",
        str(data),
        "--online-store",
        url,
        *WINDOW,
        *extra,
    ]


def test_a_worker_killed_mid_shard_is_retried_and_the_store_ends_as_one_run(
    ray_cluster: RayCluster, data: Path, redis_url: str, tmp_path: Path
) -> None:
    single = f"sqlite:///{tmp_path / 'single.db'}"
    subprocess.run(ferry_args(data, single), check=True, capture_output=True, timeout=300)
    run = subprocess.Popen(
        ferry_args(
            data, redis_url, "--ray", ray_cluster.address, "--shards", "4", "--batch-rows", "500"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ray_cluster.environment},
    )
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and run.poll() is None and time.monotonic() < deadline:
        running = ray_cluster.workers_running("run_shard")
        if running:
            killed = running[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.01)
    out, err = run.communicate(timeout=300)
    assert killed is not None, "no shard was seen running"
    assert run.returncode == 0, err
    assert "failed (attempt 1)" in err, err
    assert "retrying" in err
    lines = [json.loads(line) for line in out.splitlines()]
    shards = [line for line in lines if line["kind"] == "shard"]
    assert sorted(line["shard"] for line in shards) == ["0/4", "1/4", "2/4", "3/4"]
    assert sorted(line["attempts"] for line in shards) == [1, 1, 1, 2]
    assert all(line["bytes_read"] > 0 and line["peak_rss_bytes"] > 0 for line in shards)
    assert lines[-1]["kind"] == "total"
    assert lines[-1]["shards"] == 4
    assert lines[-1]["views"] == len(repo_of(data).views)

    repo = repo_of(data)
    one_run, on_ray = snapshot(repo, single), snapshot(repo, redis_url)
    assert watermarks(repo, redis_url) == dict.fromkeys(repo.views, END)
    for view in repo.views.values():
        assert on_ray[view.name] == one_run[view.name], view.name
        check_stored(view, oracle(repo, view, END), on_ray[view.name])
    # Each shard read about a quarter of the biggest view (whole row groups: not exactly).
    reads = [
        line["rows_read"]
        for line in lines
        if line["kind"] == "view" and line["view"] == "user_stats"
    ]
    assert max(reads) < sum(reads) * 0.4, reads
    assert min(reads) > sum(reads) * 0.1, reads


def test_a_shard_failing_every_attempt_fails_the_run_with_its_error(
    ray_cluster: RayCluster, data: Path, redis_url: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    part = sorted((broken / "user_stats").glob("*.parquet"))[0]
    damage_a_page(part)
    # No address: the cluster RAY_ADDRESS names, as ray.init finds one.
    done = subprocess.run(
        ferry_args(broken, redis_url, "--ray", "--shards", "4", "--shard-retries", "1"),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ray_cluster.environment, "RAY_ADDRESS": ray_cluster.address},
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "failed on all 2 attempts; the last: " in last, done.stderr
    assert f"source file {part}, row group " in last, done.stderr
    assert "failed (attempt 1)" in done.stderr
    assert "Traceback" not in done.stderr
    assert "user_stats" not in watermarks(repo_of(broken), redis_url), (
        "a view's watermark moved though a shard of it failed"
    )


def test_an_unreachable_ray_cluster_is_named_at_once(data: Path, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = subprocess.run(
        ferry_args(data, f"sqlite:///{tmp_path / 'x.db'}", "--ray", address, "--shards", "2"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"the Ray cluster at {address} cannot be reached" in done.stderr
    assert time.monotonic() - started < 15
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shards", "4"], "--shards needs --ray"),
        (["--ray"], "--ray needs --shards N"),
        (["--ray", "--shards", "0"], "argument --shards: 0: must be at least 1"),
        (
            ["--ray", "--shards", "2", "--shard-retries", "-1"],
            "--shard-retries: -1: must be at least 0",
        ),
        (["--ray", "--shards", "2", "--shard", "0/2"], "choose one"),
    ],
)
def test_ray_arguments_are_checked(extra: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run(
        ferry_args(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", *extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_ray_takes_end_now(data: Path, tmp_path: Path) -> None:
    # Unlike hand-run shards, the driver reads the clock once and plans every shard: the
    # arguments are good, and the run goes as far as the (unreachable) cluster.
    address = f"127.0.0.1:{free_port()}"
    args = ferry_args(data, f"sqlite:///{tmp_path / 'x.db'}", "--ray", address, "--shards", "2")
    args[args.index("--end") + 1] = "now"
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"the Ray cluster at {address} cannot be reached" in done.stderr


def test_a_bad_source_fails_the_run_before_any_shard_is_submitted(tmp_path: Path) -> None:
    # The address is never tried: the sources are checked first, as a single run does.
    done = subprocess.run(
        ferry_args(
            tmp_path / "nothing",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--ray",
            f"127.0.0.1:{free_port()}",
            "--shards",
            "2",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "user_stats" in done.stderr
    assert "Ray" not in done.stderr, done.stderr

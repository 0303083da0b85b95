"""DynamoDB and S3 on moto: what only they have (table setup, UnprocessedKeys, throttling),
runs that overlap or are killed, and clear errors for a missing table or bucket."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from ferry.core import Feature, FeatureRepo, RowCodec, ValueType, encode_key, load_repo
from ferry.core.errors import StoreUnavailableError
from ferry.stores import DynamoConfig, DynamoOnlineStore, ReadRequest, ViewTable, WriteResult
from ferry.stores.base import is_newer
from ferry.stores.dynamodb import RowTooLargeError, StoreTableMissingError
from tests.e2e.fraud import DAY, SAMPLE_REPO, check_stored, generate, oracle
from tests.e2e.test_materialize import END1, snapshot, watermarks
from tests.services import MotoServer, free_port, put_s3_objects, start_moto, upload_to_s3

FERRY = [sys.executable, "-m", "ferry.cli.main"]
WINDOW = ["--start", "2025-12-01", "--end", "2026-01-03T12:00:00Z"]


def ferry(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*FERRY, *args], capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fraud-aws")
    generate(out, users=1500, merchants=150, transactions=3000, end=END1, ttl=2 * DAY)
    return out


@pytest.fixture(scope="module")
def s3_root(data: Path, moto_server: MotoServer) -> str:
    return upload_to_s3(data, moto_server, f"aws-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def repo(data: Path) -> FeatureRepo:
    return FeatureRepo(**{**load_repo(SAMPLE_REPO).__dict__, "offline_root": str(data)})


def new_table(moto: MotoServer) -> str:
    url = moto.dynamodb_url(f"t-{uuid.uuid4().hex[:10]}")
    ferry("init-store", str(SAMPLE_REPO), "--online-store", url)
    return url


def test_init_store_creates_once_and_refuses_a_foreign_table(moto_server: MotoServer) -> None:
    url = moto_server.dynamodb_url(f"t-{uuid.uuid4().hex[:10]}")
    first = ferry("init-store", str(SAMPLE_REPO), "--online-store", url)
    assert first.stdout.startswith("created DynamoDB table")
    again = ferry("init-store", str(SAMPLE_REPO), "--online-store", url)
    assert again.stdout.startswith("found DynamoDB table")

    foreign = f"foreign-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        async with get_session().create_client(
            "dynamodb", region_name="us-east-1", endpoint_url=moto_server.endpoint
        ) as client:
            await client.create_table(
                TableName=foreign,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )

    asyncio.run(create())
    done = ferry(
        "init-store",
        str(SAMPLE_REPO),
        "--online-store",
        moto_server.dynamodb_url(foreign),
        check=False,
    )
    assert done.returncode == 1
    assert "Ferry needs a binary partition key 'k'" in done.stderr
    assert "Traceback" not in done.stderr


def failed_materialization(offline_root: str, url: str) -> str:
    """The one line a materialization into ``url`` that must fail prints (exit 1)."""
    done = ferry(
        "materialize",
        str(SAMPLE_REPO),
        "--offline-root",
        offline_root,
        "--online-store",
        url,
        *WINDOW,
        check=False,
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def test_a_missing_table_is_one_clear_message(moto_server: MotoServer, s3_root: str) -> None:
    error = failed_materialization(s3_root, moto_server.dynamodb_url("never-created"))
    assert "DynamoDB table 'never-created'" in error
    assert "does not exist: create it with 'ferry init-store" in error


async def test_a_missing_table_costs_no_client_per_attempt(moto_server: MotoServer) -> None:
    """Every health probe tries again while the table is missing; each attempt left its
    client (a connection pool, with sockets against a keep-alive endpoint) open until the
    store closed."""
    from aiobotocore.client import AioBaseClient

    store = DynamoOnlineStore(DynamoConfig.from_url(moto_server.dynamodb_url("never-made")))

    def clients() -> int:
        gc.collect()
        return sum(1 for thing in gc.get_objects() if isinstance(thing, AioBaseClient))

    try:
        before = clients()
        for _ in range(10):
            with pytest.raises(StoreTableMissingError):
                await store.ping()
        assert clients() - before <= 1
    finally:
        await store.close()


def test_a_wrong_endpoint_or_region_is_one_clear_message(
    moto_server: MotoServer, s3_root: str
) -> None:
    table = new_table(moto_server).split("://")[1].split("?")[0]
    nowhere = f"dynamodb://{table}?region=us-east-1&endpoint_url=http://127.0.0.1:{free_port()}"
    elsewhere = f"dynamodb://{table}?region=eu-west-3&endpoint_url={moto_server.endpoint}"
    for url, message in [(nowhere, "is unreachable"), (elsewhere, "in eu-west-3")]:
        started = time.monotonic()
        error = failed_materialization(s3_root, url)
        assert message in error, error
        assert time.monotonic() - started < 30


@pytest.fixture(scope="module")
def strict_moto(moto_server: MotoServer) -> Iterator[MotoServer]:
    """A second moto that knows no user: the test credentials are refused."""
    server = start_moto(check_credentials=True)
    yield server
    server.stop()


def test_refused_credentials_are_named_for_dynamodb_and_s3(strict_moto: MotoServer) -> None:
    url = strict_moto.dynamodb_url("any")
    done = ferry("init-store", str(SAMPLE_REPO), "--online-store", url, check=False)
    assert done.returncode == 1
    assert "InvalidClientTokenId" in done.stderr or "access denied" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    env = {**os.environ, "AWS_ENDPOINT_URL": strict_moto.endpoint}
    validate = [*FERRY, "validate", str(SAMPLE_REPO), "--offline-root", "s3://any/where"]
    done = subprocess.run(validate, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "ACCESS_DENIED" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_credentials_at_all_is_named(moto_server: MotoServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ACCESS_KEY")}
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    env["AWS_SHARED_CREDENTIALS_FILE"] = env["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    url = moto_server.dynamodb_url("any")
    init = [*FERRY, "init-store", str(SAMPLE_REPO), "--online-store", url]
    done = subprocess.run(init, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "no AWS credentials found" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_no_region_at_all_is_named(moto_server: MotoServer, tmp_path: Path) -> None:
    """A URL without ?region= where the AWS settings have none either (it was botocore's
    NoRegionError traceback); an endpoint's password is never shown."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    env["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    endpoint = moto_server.endpoint.replace("://", "://user:endpoint-secret@")
    url = f"dynamodb://any?endpoint_url={endpoint}"
    init = [*FERRY, "init-store", str(SAMPLE_REPO), "--online-store", url]
    done = subprocess.run(init, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "no AWS region: add ?region=R to the store URL or set AWS_REGION" in done.stderr
    assert "endpoint-secret" not in done.stderr
    assert "user:***@" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["url", "environment"])
def test_a_region_that_is_no_region_name_is_named(moto_server: MotoServer, where: str) -> None:
    """It was botocore's InvalidRegionError traceback, from the URL or from AWS_REGION."""
    env = {**os.environ}
    url = f"dynamodb://any?endpoint_url={moto_server.endpoint}"
    if where == "url":
        url += "&region=us%20east"
    else:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = "us east"
    init = [*FERRY, "init-store", str(SAMPLE_REPO), "--online-store", url]
    done = subprocess.run(init, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "Provided region_name 'us east' doesn't match a supported format" in done.stderr
    assert "(the region comes from ?region=R in the store URL, else AWS_REGION" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


async def test_refused_credentials_make_health_say_why(strict_moto: MotoServer) -> None:
    store = DynamoOnlineStore(DynamoConfig.from_url(strict_moto.dynamodb_url("any")))
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            await store.ping()
    finally:
        await store.close()
    assert caught.value.reason == "STORE_AUTHENTICATION_FAILED"


def test_two_overlapping_runs_end_as_one_run(
    moto_server: MotoServer, s3_root: str, repo: FeatureRepo
) -> None:
    # One view (the one with re-stated rows): the conditional write is the same for every
    # view, and all three views took 34 s of moto's time here (tests/e2e/test_materialize
    # meets the oracle for every view on DynamoDB).
    together, alone = new_table(moto_server), new_table(moto_server)
    window = [*WINDOW, "--views", "user_stats"]
    command = [*FERRY, "materialize", str(SAMPLE_REPO), "--offline-root", s3_root]
    runs = [
        subprocess.Popen(
            [*command, "--online-store", together, *window, "--batch-rows", size],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for size in ("300", "1000")
    ]
    for run in runs:
        run.communicate(timeout=600)
        assert run.returncode == 0
    ferry(
        "materialize", str(SAMPLE_REPO), "--offline-root", s3_root, "--online-store", alone, *window
    )
    stored = snapshot(repo, together)["user_stats"]
    assert stored == snapshot(repo, alone)["user_stats"]
    view = repo.view("user_stats")
    check_stored(view, oracle(repo, view, END1), stored)


def test_a_killed_run_run_again_ends_as_one_run(
    moto_server: MotoServer, s3_root: str, repo: FeatureRepo
) -> None:
    url = new_table(moto_server)
    window = [*WINDOW, "--views", "user_stats", "--batch-rows", "200"]
    run = subprocess.Popen(
        [
            *FERRY,
            "materialize",
            str(SAMPLE_REPO),
            "--offline-root",
            s3_root,
            "--online-store",
            url,
            *window,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(4)  # moto takes ~2.6 ms a row: the run is well under way, far from done
    os.kill(run.pid, signal.SIGKILL)
    run.communicate(timeout=30)
    assert run.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert watermarks(repo, url) == {}
    ferry(
        "materialize", str(SAMPLE_REPO), "--offline-root", s3_root, "--online-store", url, *window
    )
    view = repo.view("user_stats")
    check_stored(view, oracle(repo, view, END1), snapshot(repo, url)["user_stats"])
    assert watermarks(repo, url) == {"user_stats": END1}


async def test_unprocessed_keys_are_read_again_until_all_are_answered(
    dynamodb_url: str,
) -> None:
    """moto caps a BatchGetItem reply at 16 MB, as DynamoDB does: 60 rows of 350 KB need
    more than one call, and the store keeps asking until every key is answered."""
    codec = RowCodec([Feature("blob", ValueType.BYTES)])
    table = ViewTable("proj", "big")
    keys = [encode_key([i]) for i in range(60)]
    rows = [(key, codec.encode(1, 0, [bytes([i]) * 350_000])) for i, key in enumerate(keys)]
    store = DynamoOnlineStore(DynamoConfig.from_url(dynamodb_url))
    try:
        assert (await store.write(table, rows)).written == 60
        store.calls.clear()
        (found,) = await store.read([ReadRequest(table, keys)])
        assert found == [row for _, row in rows]
        assert store.calls["batch_get_item"] >= 2
    finally:
        await store.close()


@pytest.mark.parametrize("read_first", [True, False])
async def test_both_write_paths_apply_the_is_newer_rule(
    dynamodb_url: str, read_first: bool
) -> None:
    """Reading first skips only rows the condition would refuse: every pair of versions
    (equal times under another schema, created times, older and newer events, an expired
    stored row) ends as the conditional PutItem alone decides."""
    codecs = [
        RowCodec([Feature("n", ValueType.INT64)]),
        RowCodec([Feature("n", ValueType.INT64), Feature("m", ValueType.INT32)]),
    ]
    stamps = [(5, None), (5, 1), (5, 2), (6, 0), (4, 9)]
    versions = [c.encode(e, cr, [1] * len(c.features)) for c in codecs for e, cr in stamps]
    table = ViewTable("proj", "rule")
    config = DynamoConfig.from_url(dynamodb_url)
    store = DynamoOnlineStore(dataclasses.replace(config, read_first=read_first))
    try:
        pairs = [(old, new) for old in versions for new in versions]
        keys = [encode_key([i]) for i in range(len(pairs))]
        await store.write(table, [(key, old) for key, (old, _) in zip(keys, pairs, strict=True)])
        store.calls.clear()
        again = [(key, new) for key, (_, new) in zip(keys, pairs, strict=True)]
        result = await store.write(table, again)
        (stored,) = await store.read([ReadRequest(table, keys)])
        newer = [is_newer(new, old) for old, new in pairs]
        assert result.written == sum(newer)
        assert stored == [new if n else old for (old, new), n in zip(pairs, newer, strict=True)]
        # Reading first sent only the newer rows; without it, every row.
        assert store.calls["put_item"] == (sum(newer) if read_first else len(pairs))

        # A stored row past its expiry is no row: even an older one is written.
        short = ViewTable("proj", "short", ttl_micros=1_000_000)
        now = time.time_ns() // 1000
        await store.write(short, [(keys[0], codecs[0].encode(now, 0, [1]))])
        await asyncio.sleep(1.3)
        assert await store.write(short, [(keys[0], codecs[0].encode(now - 10, 0, [2]))]) == (
            WriteResult(1, 0)
        )
    finally:
        await store.close()


async def test_a_run_again_reads_first_and_sends_only_newer_rows(dynamodb_url: str) -> None:
    """By default the store starts writing without reading; rows found not newer turn
    reading first on (a run again after a kill costs reads, not failed writes), and new
    rows turn it off."""
    codec = RowCodec([Feature("n", ValueType.INT64)])
    table = ViewTable("proj", "again")
    keys = [encode_key([i]) for i in range(1_000)]
    store = DynamoOnlineStore(DynamoConfig.from_url(dynamodb_url))
    try:
        first = [(key, codec.encode(10, 0, [i])) for i, key in enumerate(keys)]
        assert await store.write(table, first) == WriteResult(1_000, 0)
        assert store.calls["batch_get_item"] == 0

        store.calls.clear()
        assert await store.write(table, first) == WriteResult(0, 1_000)
        assert store.calls["put_item"] <= 200  # the first hundred, before it turned on
        assert store.calls["batch_get_item"] >= 8

        store.calls.clear()
        newer = [(key, codec.encode(11, 0, [-i])) for i, key in enumerate(keys)]
        assert await store.write(table, newer) == WriteResult(1_000, 0)
        assert store.calls["batch_get_item"] <= 3  # off again within the first rows
        (stored,) = await store.read([ReadRequest(table, keys)])
        assert stored == [row for _, row in newer]
    finally:
        await store.close()


async def test_a_row_past_the_item_limit_is_refused_by_name_and_its_batch_unwritten(
    dynamodb_url: str,
) -> None:
    """DynamoDB's own answer (ValidationException, "Item size has exceeded the maximum
    allowed size") named neither view nor entity, and came after the batch's other rows."""
    codec = RowCodec([Feature("blob", ValueType.BYTES)])
    table = ViewTable("proj", "blobs")
    small, big = encode_key([1]), encode_key([7])
    store = DynamoOnlineStore(DynamoConfig.from_url(dynamodb_url))
    try:
        batch = [(small, codec.encode(1, 0, [b"s"])), (big, codec.encode(1, 0, [b"x" * 409_600]))]
        with pytest.raises(RowTooLargeError) as refused:
            await store.write(table, batch)
        assert re.match(
            r"view 'blobs': the row of entity 7 needs a 409,\d{3}-byte DynamoDB item, past its "
            r"limit of 409,600 bytes; nothing of this batch was written",
            str(refused.value),
        )
        assert refused.value.reason == "ROW_TOO_LARGE"
        assert await store.read([ReadRequest(table, [small, big])]) == [[None, None]]
        # A large row that fits is taken. (moto counts a binary value by its base64 text,
        # so it refuses rows past ~307 KB that DynamoDB, counting bytes, stores.)
        fits = codec.encode(1, 0, [b"x" * 300_000])
        assert await store.write(table, [(big, fits)]) == WriteResult(1, 0)
    finally:
        await store.close()


class ThrottlingProxy:
    """An HTTP proxy in front of moto that answers DynamoDB requests with
    ThrottlingException while ``throttle`` is more than 0 (counting down), else forwards."""

    def __init__(self, upstream_port: int, throttle: int) -> None:
        self.upstream_port = upstream_port
        self.throttle = throttle
        self.throttled = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = await reader.readexactly(length)
                if self.throttle != 0:
                    self.throttle -= 1
                    self.throttled += 1
                    payload = json.dumps(
                        {
                            "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                            "message": "Rate of requests exceeds the allowed throughput.",
                        }
                    ).encode()
                    writer.write(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.0"
                        + f"\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                        + payload
                    )
                else:
                    writer.write(await self._forward(head + body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _forward(self, request: bytes) -> bytes:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            up_writer.write(request.replace(b"Connection: keep-alive", b"Connection: close"))
            await up_writer.drain()
            return await up_reader.read()
        finally:
            up_writer.close()


@pytest.fixture
async def throttled(moto_server: MotoServer, dynamodb_url: str) -> Iterator[Any]:
    proxy = ThrottlingProxy(moto_server.port, throttle=0)
    await proxy.start()
    table = dynamodb_url.split("://")[1].split("?")[0]
    url = f"dynamodb://{table}?region=us-east-1&endpoint_url=http://127.0.0.1:{proxy.port}"
    yield proxy, url
    await proxy.stop()


async def test_throttling_is_retried_within_a_budget_then_unavailable(throttled: Any) -> None:
    proxy, url = throttled
    table = ViewTable("proj", "v")
    codec = RowCodec([Feature("n", ValueType.INT64)])
    rows = [(encode_key([i]), codec.encode(1, 0, [i])) for i in range(5)]
    store = DynamoOnlineStore(DynamoConfig.from_url(url))
    try:
        await store.ping()  # opened (the key schema read) before the throttling starts
        proxy.throttle = 6
        assert (await store.write(table, rows)).written == 5
        assert proxy.throttled == 6
        (found,) = await store.read([ReadRequest(table, [k for k, _ in rows])])
        assert found == [row for _, row in rows]
    finally:
        await store.close()
    impatient = DynamoOnlineStore(
        DynamoConfig(**{**DynamoConfig.from_url(url).__dict__, "throttle_budget_s": 0.3})
    )
    try:
        await impatient.ping()
        proxy.throttle = -1  # for good
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="ThrottlingException"):
            await impatient.write(table, rows)
        assert time.monotonic() - started < 3
    finally:
        proxy.throttle = 0
        await impatient.close()


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("s3://no-such-bucket-here/offline", "source s3://no-such-bucket-here/offline/"),
        ("{bucket}/nowhere", "does not exist"),
    ],
)
def test_s3_sources_that_are_missing(
    moto_server: MotoServer, s3_root: str, root: str, message: str
) -> None:
    bucket = s3_root.rsplit("/", 1)[0]
    done = ferry(
        "validate", str(SAMPLE_REPO), "--offline-root", root.format(bucket=bucket), check=False
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreadable_object_on_s3_is_named(moto_server: MotoServer, data: Path) -> None:
    bucket = f"odd-{uuid.uuid4().hex[:8]}"
    root = upload_to_s3(data, moto_server, bucket)
    put_s3_objects(moto_server, bucket, {"offline/merchant_stats/part-zzzzz.parquet": b"no"})
    odd = f"{bucket}/offline/merchant_stats/part-zzzzz.parquet"
    done = ferry("validate", str(SAMPLE_REPO), "--offline-root", root, check=False)
    assert done.returncode == 1
    assert f"source file {odd}: not a readable Parquet file" in done.stderr

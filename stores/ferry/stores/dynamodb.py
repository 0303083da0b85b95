"""Online store on DynamoDB, through aiobotocore: one table per deployment.

Table layout (``ferry init-store`` creates it: on-demand billing, TTL on ``exp``):

    k    B  partition key: the storage key (a hash of project and view + entity key, see
            ``ferry.stores.base.hashed_prefix``), so several projects and views share one
            table without colliding
    v    B  the encoded row
    ts   B  the row's 16 order-preserving timestamp bytes; DynamoDB compares binary
            attributes as unsigned bytes, so ``ts < :ts`` is "older"
    fp   N  the row's schema fingerprint
    exp  N  for views with a TTL: when DynamoDB may delete the item (epoch seconds, rounded
            down: a row may expire up to a second early)
    wm   N  watermark items only (key ``\\x00watermark:project:view``: no project starts
            with a NUL byte, so these never meet a row)

Reads are BatchGetItem calls of at most 100 distinct keys, sent concurrently, projecting
``k, v, exp``; UnprocessedKeys are re-sent with jittered backoff until every key is answered
(the caller's deadline bounds it). Items past ``exp`` are absent: DynamoDB deletes expired
items lazily, up to days later. Writes are one conditional PutItem per row (BatchWriteItem
cannot carry conditions), ``max_writes_in_flight`` at once, with the condition of
``is_newer``; a failed condition means "the stored row is as new or newer". Throttling is
retried with backoff for up to ``throttle_budget_s``, then the write fails UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ferry.core.codec import fingerprint_of, timestamp_prefix
from ferry.core.errors import StoreError, StoreUnavailableError
from ferry.core.redaction import redact_url
from ferry.stores.base import (
    ReadRequest,
    ViewTable,
    WriteResult,
    expires_at_ms,
    storage_key,
    storage_keys,
)
from ferry.stores.resp import StoreAuthenticationError

_BATCH_GET = 100  # DynamoDB's limit per BatchGetItem
# An expired item (DynamoDB deletes them lazily) counts as absent, as in the other stores.
_CONDITION = "attribute_not_exists(k) OR exp <= :now OR ts < :ts OR (ts = :ts AND fp <> :fp)"
_THROTTLED = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
}
_DENIED = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "AccessDeniedException",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
}
_PING_KEY = b"\x00ping"


class StoreRegionMissingError(StoreUnavailableError):
    """The store URL names no region and the AWS settings have none either."""

    reason = "STORE_REGION_MISSING"


class StoreTableMissingError(StoreUnavailableError):
    """The DynamoDB table does not exist (or has another key schema): run ferry init-store."""

    reason = "STORE_TABLE_MISSING"


@dataclass(frozen=True)
class DynamoConfig:
    """Where the table is and how calls are bounded.

    Attributes:
        table: The table name.
        region: AWS region; None takes the standard AWS settings (``AWS_REGION``, ...).
        endpoint_url: Another endpoint (a local DynamoDB, moto in tests); None for AWS.
        consistent_read: Strongly consistent reads (twice the read capacity). Default False:
            eventually consistent, usually current within a second.
        connect_timeout_s: Bound on opening a connection, in seconds. Default 1.
        read_timeout_s: Bound on one HTTP response, in seconds. Default 2.
        max_pool_connections: HTTP connections kept open. Default 50 (botocore's 10
            queues concurrent BatchGetItem calls).
        max_writes_in_flight: Conditional PutItems sent at once by one write. Default 32.
        throttle_budget_s: How long one call retries throttling (or UnprocessedKeys) before
            failing UNAVAILABLE, in seconds. Default 10.
    """

    table: str
    region: str | None = None
    endpoint_url: str | None = None
    consistent_read: bool = False
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 2.0
    max_pool_connections: int = 50
    max_writes_in_flight: int = 32
    throttle_budget_s: float = 10.0

    @classmethod
    def from_url(cls, url: str) -> DynamoConfig:
        """``dynamodb://TABLE?region=R[&endpoint_url=URL][&consistent_read=true]``.

        Raises:
            StoreError: no table, or an unknown parameter.
        """
        parts = urlsplit(url)
        table = parts.netloc or parts.path.strip("/")
        if not table:
            raise StoreError(
                f"online store URL {redact_url(url)!r}: expected dynamodb://TABLE?region=R"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"region", "endpoint_url", "consistent_read"}
        if unknown:
            names = ", ".join(sorted(unknown))
            raise StoreError(
                f"online store URL {redact_url(url)!r}: unknown parameter(s) {names}; "
                "expected region, endpoint_url, consistent_read"
            )
        return cls(
            table,
            region=query.get("region"),
            endpoint_url=query.get("endpoint_url"),
            consistent_read=query.get("consistent_read", "false").lower() in ("1", "true"),
        )


class DynamoOnlineStore:
    """The OnlineStore protocol on one DynamoDB table (see the module docstring)."""

    # A BatchGetItem costs ~1.2 ms of botocore CPU: merging concurrent reads pays
    # (2.9x the calls/s at batch 1, docs/benchmarks.md).
    natural_batching_reads = 2

    def __init__(self, config: DynamoConfig) -> None:
        self.config = config
        self.backend = "dynamodb"  # for metrics and traces: the class name would say "dynamo"
        self.calls: Counter[str] = Counter()
        """DynamoDB requests sent, by operation (retries included): for tests and benchmarks."""
        self._client: Any = None
        self._exit = contextlib.AsyncExitStack()
        self._opening = asyncio.Lock()
        self._where = (
            f"DynamoDB table {config.table!r}"
            + (f" in {config.region}" if config.region else "")
            + (f" at {redact_url(config.endpoint_url)}" if config.endpoint_url else "")
        )

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        wanted = list(dict.fromkeys(storage_keys(requests)))
        chunks = [wanted[i : i + _BATCH_GET] for i in range(0, len(wanted), _BATCH_GET)]
        found: dict[bytes, bytes] = {}
        for part in await asyncio.gather(*(self._get_all(chunk) for chunk in chunks)):
            found.update(part)
        return [[found.get(storage_key(r.table, k)) for k in r.keys] for r in requests]

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        if not rows:
            return WriteResult(0, 0)
        client = await self._opened()
        now_ms = time.time_ns() // 1_000_000
        limit = asyncio.Semaphore(self.config.max_writes_in_flight)

        async def put(key: bytes, row: bytes) -> bool:
            item = {
                "k": {"B": storage_key(table, key)},
                "v": {"B": row},
                "ts": {"B": timestamp_prefix(row)},
                "fp": {"N": str(fingerprint_of(row))},
            }
            expiry = expires_at_ms(table, row, now_ms)
            if expiry is not None:
                item["exp"] = {"N": str(expiry // 1000)}
            values = {":ts": item["ts"], ":fp": item["fp"], ":now": {"N": str(now_ms // 1000)}}
            async with limit:
                try:
                    await self._call(
                        client.put_item,
                        TableName=self.config.table,
                        Item=item,
                        ConditionExpression=_CONDITION,
                        ExpressionAttributeValues=values,
                    )
                except _ConditionFailedError:
                    return False
            return True

        tasks = [asyncio.ensure_future(put(key, row)) for key, row in rows]
        try:
            written = sum(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # every failure retrieved
            raise
        return WriteResult(written, len(rows) - written)

    async def delete(self, table: ViewTable, keys: Sequence[bytes]) -> int:
        client = await self._opened()
        deleted = 0
        for key in dict.fromkeys(keys):
            reply = await self._call(
                client.delete_item,
                TableName=self.config.table,
                Key={"k": {"B": storage_key(table, key)}},
                ReturnValues="ALL_OLD",
            )
            deleted += bool(reply.get("Attributes"))
        return deleted

    async def read_watermarks(self, project: str, views: Sequence[str]) -> dict[str, int]:
        keys = {_watermark_key(project, view): view for view in views}
        client = await self._opened()
        out: dict[str, int] = {}
        for key in keys:
            reply = await self._call(
                client.get_item,
                TableName=self.config.table,
                Key={"k": {"B": key}},
                ConsistentRead=True,
            )
            mark = reply.get("Item", {}).get("wm")
            if mark is not None:
                out[keys[key]] = int(mark["N"])
        return out

    async def write_watermark(self, project: str, view: str, micros: int) -> None:
        client = await self._opened()
        with contextlib.suppress(_ConditionFailedError):  # it is already as high or higher
            await self._call(
                client.update_item,
                TableName=self.config.table,
                Key={"k": {"B": _watermark_key(project, view)}},
                UpdateExpression="SET wm = :m",
                ConditionExpression="attribute_not_exists(wm) OR wm < :m",
                ExpressionAttributeValues={":m": {"N": str(micros)}},
            )

    async def ping(self) -> None:
        client = await self._opened()
        await self._call(client.get_item, TableName=self.config.table, Key={"k": {"B": _PING_KEY}})

    async def initialize(self) -> str:
        """Create the table (on-demand, TTL on ``exp``) if it does not exist; check its key
        schema if it does. Idempotent. Returns what was done."""
        client = await self._opened(check=False)
        created = False
        try:
            await self._call(
                client.create_table,
                TableName=self.config.table,
                KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "B"}],
                BillingMode="PAY_PER_REQUEST",
            )
            created = True
        except StoreError as err:
            if "ResourceInUseException" not in str(err):
                raise
        waiter = client.get_waiter("table_exists")
        await waiter.wait(TableName=self.config.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        await self._check_schema(client)
        ttl = await self._call(client.describe_time_to_live, TableName=self.config.table)
        if ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus") not in (
            "ENABLED",
            "ENABLING",
        ):
            await self._call(
                client.update_time_to_live,
                TableName=self.config.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"},
            )
        return f"{'created' if created else 'found'} {self._where}, TTL on attribute 'exp'"

    async def close(self) -> None:
        await self._exit.aclose()
        self._client = None

    async def _get_all(self, keys: list[bytes]) -> dict[bytes, bytes]:
        client = await self._opened()
        now_s = time.time()
        pending: dict[str, Any] = {
            self.config.table: {
                "Keys": [{"k": {"B": key}} for key in keys],
                "ProjectionExpression": "k, v, #exp",
                "ExpressionAttributeNames": {"#exp": "exp"},
                "ConsistentRead": self.config.consistent_read,
            }
        }
        found: dict[bytes, bytes] = {}
        attempt = 0
        give_up = time.monotonic() + self.config.throttle_budget_s
        while pending:
            if attempt:  # UnprocessedKeys: the table is busy or the reply hit 16 MB
                if time.monotonic() > give_up:  # the server's deadline is usually sooner
                    raise StoreUnavailableError(
                        f"{self._where}: keys still unprocessed after "
                        f"{self.config.throttle_budget_s:g} s of retries"
                    )
                await asyncio.sleep(_backoff_s(attempt))
            reply = await self._call(client.batch_get_item, RequestItems=pending)
            for item in reply.get("Responses", {}).get(self.config.table, []):
                if _expired(item, now_s):
                    continue  # expired; DynamoDB has not deleted it yet
                row = item.get("v", {}).get("B")
                # An item written by something else (no binary 'v') is answered as a row
                # that does not decode: the server reports it for its key, never serves it.
                found[bytes(item["k"]["B"])] = bytes(row) if isinstance(row, bytes) else b""
            pending = reply.get("UnprocessedKeys") or {}
            attempt += 1
        return found

    async def _opened(self, check: bool = True) -> Any:
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                # Imported here: botocore comes with the optional aiobotocore dependency.
                from botocore.exceptions import NoRegionError

                # Kept only once its table checks out: a client left open per failed
                # attempt (one per health probe while the table is missing) leaked sockets.
                opened = contextlib.AsyncExitStack()
                try:
                    client = await opened.enter_async_context(self._session_client())
                    if check:
                        await self._check_schema(client)
                except NoRegionError:  # a configuration error: say what to set
                    await opened.aclose()
                    raise StoreRegionMissingError(
                        f"{self._where}: no AWS region: add ?region=R to the store URL or "
                        "set AWS_REGION"
                    ) from None
                except BaseException:
                    await opened.aclose()
                    raise
                await self._exit.enter_async_context(opened)
                self._client = client
        return self._client

    def _session_client(self) -> Any:
        # Optional dependency: only a DynamoDB store needs aiobotocore.
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(
            connect_timeout=self.config.connect_timeout_s,
            read_timeout=self.config.read_timeout_s,
            max_pool_connections=self.config.max_pool_connections,
            # botocore's legacy mode made 10 attempts over 25 s; throttling and
            # UnprocessedKeys are retried here, within the caller's deadline.
            retries={"mode": "standard", "total_max_attempts": 2},
        )
        return get_session().create_client(
            "dynamodb",
            region_name=self.config.region,
            endpoint_url=self.config.endpoint_url,
            config=config,
        )

    async def _check_schema(self, client: Any) -> None:
        reply = await self._call(client.describe_table, TableName=self.config.table)
        table = reply["Table"]
        keys = [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]]
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        if keys != [("k", "HASH")] or types.get("k") != "B":
            raise StoreTableMissingError(
                f"{self._where} has key schema {keys} ({types}); Ferry needs a binary partition "
                "key 'k' and no sort key: use another table, or create one with ferry init-store"
            )

    async def _call(self, operation: Any, **arguments: Any) -> Any:
        """One DynamoDB call; throttling retried with backoff within the budget, and every
        failure turned into a Ferry store error."""
        # Imported here: botocore comes with the optional aiobotocore dependency.
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        deadline = time.monotonic() + self.config.throttle_budget_s
        attempt = 0
        while True:
            self.calls[operation.__name__] += 1
            try:
                return await operation(**arguments)
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                message = err.response.get("Error", {}).get("Message", "")
                status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 403 and code not in _DENIED:  # a body botocore could not read
                    code, message = "AccessDeniedException", "access denied (HTTP 403)"
                if code == "ConditionalCheckFailedException":
                    raise _ConditionFailedError from err
                if code in _THROTTLED and time.monotonic() < deadline:
                    attempt += 1
                    await asyncio.sleep(_backoff_s(attempt))
                    continue
                raise self._error(code, message) from err
            except NoCredentialsError as err:  # a configuration error, not an outage
                raise StoreAuthenticationError(
                    f"{self._where}: no AWS credentials found (environment, profile, role): {err}"
                ) from err
            except BotoCoreError as err:  # no connection, timeouts, ...
                raise StoreUnavailableError(f"{self._where} is unreachable: {err}") from err

    def _error(self, code: str, message: str) -> StoreError:
        what = f"{self._where}: {code}: {message}"
        if code == "ResourceNotFoundException":
            return StoreTableMissingError(
                f"{self._where} does not exist: create it with "
                f"'ferry init-store REPO_FILE --online-store URL' ({message})"
            )
        if code in _DENIED:
            return StoreAuthenticationError(what)
        if code in _THROTTLED or code in ("InternalServerError", "ServiceUnavailable"):
            return StoreUnavailableError(
                f"{what} (retried for {self.config.throttle_budget_s:g} s)"
            )
        return StoreError(what)


class _ConditionFailedError(Exception):
    """A conditional write found a row as new or newer (or a higher watermark)."""


def _expired(item: dict[str, Any], now_s: float) -> bool:
    """Whether an item's TTL attribute has passed. One that is not a number does not count:
    the server still holds every row to its view's TTL by the row's own event time."""
    try:
        return float(item["exp"]["N"]) <= now_s
    except (KeyError, TypeError, ValueError):
        return False


def _backoff_s(attempt: int) -> float:
    """Full jitter: a random wait up to 25 ms doubled per attempt, at most 1 s."""
    return random.uniform(0, min(1.0, 0.025 * 2 ** (attempt - 1)))


def _watermark_key(project: str, view: str) -> bytes:
    return f"\x00watermark:{project}:{view}".encode()

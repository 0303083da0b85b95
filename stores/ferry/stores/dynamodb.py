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
``is_newer``; a failed condition means "the stored row is as new or newer". While many
rows lately were not newer (a run again after a kill), each 100 rows are read first and the
ones certainly not newer are not sent (``DynamoConfig.read_first``). Throttling is retried
with backoff for up to ``throttle_budget_s``, then the write fails UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ferry.core.codec import fingerprint_of, timestamp_prefix
from ferry.core.errors import InvalidValueError, StoreError, StoreUnavailableError
from ferry.core.keys import decode_key
from ferry.core.redaction import redact_url
from ferry.stores.base import (
    ReadRequest,
    ViewTable,
    WriteResult,
    expires_at_ms,
    is_newer_than,
    storage_key,
    storage_keys,
)
from ferry.stores.resp import StoreAuthenticationError
from ferry.stores.skip_estimate import SkipEstimate

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
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_BOOLEANS: dict[str, bool | None] = {"true": True, "false": False, "1": True, "0": False}


class StoreRegionMissingError(StoreUnavailableError):
    """The store URL names no region and the AWS settings have none either, or the region
    given is not a region name."""

    reason = "STORE_REGION_MISSING"


class RowTooLargeError(InvalidValueError):
    """A row that would make an item past DynamoDB's 400 KB limit."""

    reason = "ROW_TOO_LARGE"


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
        read_first: Read the stored versions of each 100 rows before writing them, and send
            only the rows newer than those: True always, False never, None (the default)
            while a fifth or more of the rows lately were not newer (``SkipEstimate``).
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
    read_first: bool | None = None

    @classmethod
    def from_url(cls, url: str) -> DynamoConfig:
        """``dynamodb://TABLE?region=R[&endpoint_url=URL][&consistent_read=true]
        [&read_first=auto|true|false]``.

        Raises:
            StoreError: no table, an unknown parameter, or a value a flag does not take.
        """
        parts = urlsplit(url)
        table = parts.netloc or parts.path.strip("/")
        if not table:
            raise StoreError(
                f"online store URL {redact_url(url)!r}: expected dynamodb://TABLE?region=R"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"region", "endpoint_url", "consistent_read", "read_first"}
        if unknown:
            names = ", ".join(sorted(unknown))
            raise StoreError(
                f"online store URL {redact_url(url)!r}: unknown parameter(s) {names}; "
                "expected region, endpoint_url, consistent_read, read_first"
            )

        def flag(name: str, default: str, choices: dict[str, bool | None]) -> bool | None:
            # Strict: consistent_read=yes used to mean false, silently.
            value = query.get(name, default).lower()
            if value not in choices:
                raise StoreError(
                    f"online store URL {redact_url(url)!r}: {name}={value!r}; expected "
                    + " or ".join(choices)
                )
            return choices[value]

        if not _TABLE_NAME.fullmatch(table):
            raise StoreError(
                f"online store URL {redact_url(url)!r}: {table!r} is not a DynamoDB table "
                "name (3 to 255 of a-z, A-Z, 0-9, '_', '-', '.')"
            )
        endpoint = query.get("endpoint_url")
        if endpoint is not None:
            try:
                where = urlsplit(endpoint)
                scheme, host = where.scheme, where.hostname
            except ValueError as err:
                raise StoreError(
                    f"online store URL {redact_url(url)!r}: endpoint_url "
                    f"{redact_url(endpoint)!r}: {err}"
                ) from None
            if scheme not in ("http", "https") or not host:
                raise StoreError(
                    f"online store URL {redact_url(url)!r}: endpoint_url "
                    f"{redact_url(endpoint)!r} is not an http:// or https:// URL with a host"
                )
        return cls(
            table,
            region=query.get("region"),
            endpoint_url=endpoint,
            consistent_read=bool(flag("consistent_read", "false", _BOOLEANS)),
            read_first=flag("read_first", "auto", {"auto": None, **_BOOLEANS}),
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
        self._skips = SkipEstimate()
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
        """Conditional PutItems, ``max_writes_in_flight`` at once. While most rows lately
        were not newer than the stored ones (a run again after a kill, overlapping
        windows), each 100 rows are read first and those certainly not newer are skipped
        unsent: a failed condition is billed as a write and costs a PutItem's CPU (~1.2
        ms); a read of 100 keys costs a tenth of a write's price per row and ~3 ms in all."""
        if not rows:
            return WriteResult(0, 0)
        _check_item_sizes(table, rows)
        client = await self._opened()
        now_ms = time.time_ns() // 1_000_000
        slots = asyncio.Semaphore(self.config.max_writes_in_flight)
        tasks: list[asyncio.Future[bool]] = []
        failures: list[BaseException] = []

        async def put(key: bytes, row: bytes) -> bool:  # holds a slot the loop took
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
            try:
                await self._call(
                    client.put_item,
                    TableName=self.config.table,
                    Item=item,
                    ConditionExpression=_CONDITION,
                    ExpressionAttributeValues=values,
                )
            except _ConditionFailedError:
                self._skips.note(skipped=1)
                return False
            except BaseException as err:
                failures.append(err)
                raise
            finally:
                slots.release()
            self._skips.note(written=1)
            return True

        try:
            for start in range(0, len(rows), _BATCH_GET):
                part = rows[start : start + _BATCH_GET]
                if self._reading_first():
                    part = await self._newer_than_stored(table, part, now_ms)
                for key, row in part:
                    await slots.acquire()
                    if failures:  # stop sending: the write fails with the first error
                        slots.release()
                        raise failures[0]
                    tasks.append(asyncio.ensure_future(put(key, row)))
            written = sum(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # every failure retrieved
            raise
        return WriteResult(written, len(rows) - written)

    def _reading_first(self) -> bool:
        if self.config.read_first is None:
            return self._skips.worth_reading_first
        return self.config.read_first

    async def _newer_than_stored(
        self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]], now_ms: int
    ) -> Sequence[tuple[bytes, bytes]]:
        """The rows a read of their stored versions does not show to be as new or newer.
        An eventually consistent read is enough: a stored version only moves forward, so a
        stale one can only send a row whose condition then fails, never hold one back."""
        keys = [storage_key(table, key) for key, _ in rows]
        items = await self._batch_get(list(dict.fromkeys(keys)), "k, ts, fp, #exp")
        stored = {bytes(item["k"]["B"]): item for item in items}
        now_s = now_ms // 1000
        kept = [
            pair
            for pair, key in zip(rows, keys, strict=True)
            if not _holds_as_new(stored.get(key), pair[1], now_s)
        ]
        self._skips.note(skipped=len(rows) - len(kept))
        return kept

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
        now_s = time.time()
        found: dict[bytes, bytes] = {}
        for item in await self._batch_get(keys, "k, v, #exp", self.config.consistent_read):
            if _expired(item, now_s):
                continue  # expired; DynamoDB has not deleted it yet
            row = item.get("v", {}).get("B")
            # An item written by something else (no binary 'v') is answered as a row
            # that does not decode: the server reports it for its key, never serves it.
            found[bytes(item["k"]["B"])] = bytes(row) if isinstance(row, bytes) else b""
        return found

    async def _batch_get(
        self, keys: list[bytes], projection: str, consistent: bool = False
    ) -> list[dict[str, Any]]:
        """The items of up to 100 keys (``projection`` may name ``#exp``), UnprocessedKeys
        re-sent with jittered backoff within the throttle budget."""
        client = await self._opened()
        pending: dict[str, Any] = {
            self.config.table: {
                "Keys": [{"k": {"B": key}} for key in keys],
                "ProjectionExpression": projection,
                "ExpressionAttributeNames": {"#exp": "exp"},
                "ConsistentRead": consistent,
            }
        }
        items: list[dict[str, Any]] = []
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
            items.extend(reply.get("Responses", {}).get(self.config.table, []))
            pending = reply.get("UnprocessedKeys") or {}
            attempt += 1
        return items

    async def _opened(self, check: bool = True) -> Any:
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                # Imported here: botocore comes with the optional aiobotocore dependency.
                from botocore.exceptions import InvalidRegionError, NoRegionError

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
                except InvalidRegionError as err:  # from the URL or AWS_REGION
                    await opened.aclose()
                    raise StoreRegionMissingError(
                        f"{self._where}: {err} (the region comes from ?region=R in the store "
                        "URL, else AWS_REGION or the AWS profile)"
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
            # Every request is built here, in shapes the tests send to moto: botocore's walk
            # over each key's dict was ~15% of a 100-key BatchGetItem's client CPU (3.8 ->
            # 3.2 ms, measured in-process on moto) and ~3% of a PutItem's.
            parameter_validation=False,
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


# DynamoDB's item limit counts attribute names and values: k, v, ts (16 bytes), fp and exp
# (numbers, at most 21 bytes each) come to the key and the row plus at most 67 bytes.
_MAX_ITEM_BYTES = 400 * 1024
_ITEM_OVERHEAD_BYTES = len("kvtsfpexp") + 16 + 2 * 21


def _check_item_sizes(table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> None:
    """Refuse the whole write, before anything is sent, if a row cannot be stored: the
    server's own answer (ValidationException, "Item size has exceeded...") names neither
    the view nor the entity, and it came after the other rows of the batch were written."""
    for key, row in rows:
        size = len(storage_key(table, key)) + len(row) + _ITEM_OVERHEAD_BYTES
        if size > _MAX_ITEM_BYTES:
            try:
                entity = ", ".join(repr(value) for value in decode_key(key))
            except InvalidValueError:
                entity = key.hex()
            raise RowTooLargeError(
                f"view {table.view!r}: the row of entity {entity} needs a {size:,}-byte "
                f"DynamoDB item, past its limit of {_MAX_ITEM_BYTES:,} bytes; nothing of "
                "this batch was written",
                feature_view=table.view,
            )


def _holds_as_new(item: dict[str, Any] | None, row: bytes, now_s: int) -> bool:
    """Whether a stored item certainly holds a row as new as ``row`` or newer: the negation
    of the write condition (``_CONDITION``, which is ``is_newer``). Anything unclear (no item,
    an expiry passed, attributes of the wrong type) sends the row, and the condition
    decides."""
    if item is None or _expired(item, now_s):
        return False
    stored_ts, stored_fp = item.get("ts", {}).get("B"), item.get("fp", {}).get("N")
    try:
        fingerprint = int(stored_fp)
    except (TypeError, ValueError):
        return False
    # Python, as DynamoDB, compares binary values as unsigned bytes.
    return isinstance(stored_ts, bytes) and not is_newer_than(row, stored_ts, fingerprint)


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

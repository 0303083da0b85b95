"""Open an online store from its URL: the one place URL schemes map to backends."""

from __future__ import annotations

from urllib.parse import urlsplit

from ferry.core.errors import StoreError
from ferry.core.redaction import redact_url
from ferry.stores.base import OnlineStore
from ferry.stores.dynamodb import DynamoConfig, DynamoOnlineStore
from ferry.stores.redis import RedisConfig, RedisOnlineStore
from ferry.stores.redis_cluster import RedisClusterOnlineStore
from ferry.stores.sqlite import SqliteOnlineStore

SCHEMES = (
    "sqlite:///PATH",
    "redis://HOST:PORT/DB",
    "rediss://HOST:PORT/DB[?ca=F&cert=F&key=F&server_name=N]",
    "redis+cluster://HOST:PORT[,HOST:PORT...] (rediss+cluster:// for TLS)",
    "dynamodb://TABLE?region=R",
)


def open_online_store(url: str) -> OnlineStore:
    """The store an URL names. Connections open lazily, on first use.

    Raises:
        StoreError: the URL's scheme is not supported or it lacks a part.
    """
    try:
        scheme = urlsplit(url).scheme
    except ValueError as err:  # "Invalid IPv6 URL": a bracket left open
        raise StoreError(f"online store URL {redact_url(url)!r}: {err}") from None
    if scheme == "sqlite":
        # As in SQLAlchemy: sqlite:///rel.db is relative, sqlite:////abs/x.db absolute.
        path = url.removeprefix("sqlite:///")
        if path == url or not path:
            raise StoreError(f"online store URL {redact_url(url)!r}: expected sqlite:///PATH")
        return SqliteOnlineStore(path)
    if scheme in ("redis", "rediss"):
        _check_redis_url(url, scheme)
        return RedisOnlineStore(RedisConfig(url))
    if scheme in ("redis+cluster", "rediss+cluster"):
        return RedisClusterOnlineStore(RedisConfig(url))
    if scheme == "dynamodb":
        return DynamoOnlineStore(DynamoConfig.from_url(url))
    raise StoreError(
        f"online store URL {redact_url(url)!r}: unsupported scheme {scheme!r}; expected one of "
        + ", ".join(SCHEMES)
    )


def _check_redis_url(url: str, scheme: str) -> None:
    """A host, a port that is a number (or none: 6379) and a database that is a number.

    Raises:
        StoreError: naming the part that is wrong, with the password redacted.
    """
    shown = f"online store URL {redact_url(url)!r}"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - parsed on access: "Port could not be cast to integer"
    except ValueError as err:
        raise StoreError(f"{shown}: {err}; expected {scheme}://HOST:PORT/DB") from None
    if not parts.hostname:
        raise StoreError(f"{shown}: expected {scheme}://HOST:PORT/DB")
    database = parts.path.strip("/")
    if database and not (database.isascii() and database.isdigit()):
        raise StoreError(f"{shown}: the database {database!r} is not a number")

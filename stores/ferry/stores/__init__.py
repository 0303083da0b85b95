"""Online stores behind one Protocol, and the offline Parquet reader."""

from ferry.stores.base import (
    OnlineStore,
    ReadRequest,
    ViewTable,
    WriteResult,
    expires_at_ms,
    hashed_prefix,
    is_newer,
    storage_key,
)
from ferry.stores.cached import CachedOnlineStore
from ferry.stores.dynamodb import DynamoConfig, DynamoOnlineStore, StoreTableMissingError
from ferry.stores.near_cache import CacheLimits, NearCache
from ferry.stores.offline import open_source
from ferry.stores.redis import RedisConfig, RedisOnlineStore
from ferry.stores.resp import RespConnection, StoreAuthenticationError, TrackingRefusedError
from ferry.stores.sqlite import SqliteOnlineStore
from ferry.stores.urls import open_online_store

__all__ = [
    "CacheLimits",
    "CachedOnlineStore",
    "DynamoConfig",
    "DynamoOnlineStore",
    "NearCache",
    "OnlineStore",
    "ReadRequest",
    "RedisConfig",
    "RedisOnlineStore",
    "RespConnection",
    "SqliteOnlineStore",
    "StoreAuthenticationError",
    "StoreTableMissingError",
    "TrackingRefusedError",
    "ViewTable",
    "WriteResult",
    "expires_at_ms",
    "hashed_prefix",
    "is_newer",
    "open_online_store",
    "open_source",
    "storage_key",
]

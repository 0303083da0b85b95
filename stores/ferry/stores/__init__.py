"""Online stores behind one Protocol, and the offline Parquet reader."""

from ferry.stores.base import (
    OnlineStore,
    ReadRequest,
    ViewTable,
    WriteResult,
    expires_at_ms,
    is_newer,
    storage_key,
)
from ferry.stores.dynamodb import DynamoConfig, DynamoOnlineStore, StoreTableMissingError
from ferry.stores.offline import open_source
from ferry.stores.redis import RedisConfig, RedisOnlineStore
from ferry.stores.resp import StoreAuthenticationError
from ferry.stores.sqlite import SqliteOnlineStore
from ferry.stores.urls import open_online_store

__all__ = [
    "DynamoConfig",
    "DynamoOnlineStore",
    "OnlineStore",
    "ReadRequest",
    "RedisConfig",
    "RedisOnlineStore",
    "SqliteOnlineStore",
    "StoreAuthenticationError",
    "StoreTableMissingError",
    "ViewTable",
    "WriteResult",
    "expires_at_ms",
    "is_newer",
    "open_online_store",
    "open_source",
    "storage_key",
]

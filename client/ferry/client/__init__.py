"""The Ferry Python client: ``FerryClient`` (blocking) and ``AsyncFerryClient`` (asyncio)."""

from ferry.client._clients import AsyncFerryClient, FerryClient, PushResult
from ferry.client._errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    RpcError,
    UnavailableError,
    UnimplementedError,
)
from ferry.client._results import FeatureValues, OnlineFeatures
from ferry.client._retry import RetryPolicy

__all__ = [
    "AsyncFerryClient",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FeatureValues",
    "FerryClient",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OnlineFeatures",
    "PushResult",
    "ResourceExhaustedError",
    "RetryPolicy",
    "RpcError",
    "UnavailableError",
    "UnimplementedError",
]

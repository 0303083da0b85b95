"""Retry policy: only UNAVAILABLE is retried, and only for reads (AIP-194)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class RetryPolicy:
    """How reads are retried.

    Attributes:
        attempts: Total attempts, the first included. Default 3.
        initial_backoff_s: Pause before the second attempt, in seconds. Default 0.05.
        multiplier: Growth of the pause per attempt. Default 2.
    """

    attempts: int = 3
    initial_backoff_s: float = 0.05
    multiplier: float = 2.0

    def pauses(self) -> Iterator[float]:
        """The pause before each retry."""
        pause = self.initial_backoff_s
        for _ in range(self.attempts - 1):
            yield pause
            pause *= self.multiplier


def retryable(err: grpc.RpcError) -> bool:
    return err.code() is grpc.StatusCode.UNAVAILABLE


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)

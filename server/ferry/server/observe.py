"""What the error interceptor's guard reports of each call when metrics or access-log
sampling are on: counts and time by the code it ended with (``ferry.server.metrics``),
and the sampled access log line of a successful call (``ferry.server.logs``; failures are
logged where they become statuses). It rides on the guard instead of being an interceptor
of its own: grpc.aio runs every interceptor on every call, and an extra layer cost more
server CPU than all the counting (measured with ``loadtest/metrics_overhead.py``)."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from ferry.server.logs import log_call, sampled
from ferry.server.metrics import MethodMetrics, Metrics

UNLOGGED = "/grpc.health.v1.Health/"  # probes every few seconds would drown the access log


class MethodObserver:
    """Observes the calls of one method."""

    def __init__(self, method: str, counted: MethodMetrics | None, sample: float) -> None:
        self.method = method
        self.counted = counted
        self.sample = sample

    def start(self) -> None:
        if self.counted is not None:
            self.counted.start()

    def done(
        self,
        code: grpc.StatusCode,
        seconds: float,
        context: grpc.aio.ServicerContext,
        request: Any,
    ) -> None:
        if self.counted is not None:
            self.counted.done(seconds, code)
        if code is grpc.StatusCode.OK and sampled(self.sample):
            log_call(self.method, code, context, request, seconds)


class Observer:
    """Makes the observer of each method, or none when nothing is to be observed."""

    def __init__(self, metrics: Metrics | None, access_log_sample: float) -> None:
        self.metrics = metrics
        self.sample = access_log_sample

    def method(self, method: str, kind: str) -> MethodObserver | None:
        sample = 0.0 if method.startswith(UNLOGGED) else self.sample
        counted = MethodMetrics(self.metrics, method, kind) if self.metrics is not None else None
        if counted is None and sample <= 0:
            return None
        return MethodObserver(method, counted, sample)

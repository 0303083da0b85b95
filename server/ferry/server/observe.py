"""What the error interceptor's guard reports of each call when metrics, tracing or
access-log sampling are on: counts and time by the code it ended with
(``ferry.server.metrics``), the RPC's span (``ferry.server.tracing``), and the sampled
access log line of a successful call (``ferry.server.logs``; failures are logged where they
become statuses). It rides on the guard instead of being an interceptor
of its own: grpc.aio runs every interceptor on every call, and an extra layer cost more
server CPU than all the counting (measured with ``loadtest/metrics_overhead.py``)."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from ferry.server.logs import log_call, sampled
from ferry.server.metrics import MethodMetrics, Metrics
from ferry.server.tracing import Tracing

# Probes every few seconds would drown the access log and the traces (they are counted).
UNOBSERVED = "/grpc.health.v1.Health/"


class MethodObserver:
    """Observes the calls of one method."""

    def __init__(
        self,
        method: str,
        counted: MethodMetrics | None,
        sample: float,
        tracing: Tracing | None,
    ) -> None:
        self.method = method
        self.counted = counted
        self.sample = sample
        self.tracing = tracing

    def start(self, context: grpc.aio.ServicerContext) -> Any:
        """A call began; what ``done`` needs of it (its span, when tracing)."""
        if self.counted is not None:
            self.counted.start()
        if self.tracing is not None:
            return self.tracing.rpc(self.method, context.invocation_metadata())
        return None

    def done(
        self,
        started: Any,
        code: grpc.StatusCode,
        seconds: float,
        context: grpc.aio.ServicerContext,
        request: Any,
    ) -> None:
        if self.counted is not None:
            self.counted.done(seconds, code)
        if self.tracing is not None:
            self.tracing.finish(started, code)
        if code is grpc.StatusCode.OK and sampled(self.sample):
            log_call(self.method, code, context, request, seconds)


class Observer:
    """Makes the observer of each method, or none when nothing is to be observed."""

    def __init__(
        self, metrics: Metrics | None, access_log_sample: float, tracing: Tracing | None = None
    ) -> None:
        self.metrics = metrics
        self.sample = access_log_sample
        self.tracing = tracing

    def method(self, method: str, kind: str) -> MethodObserver | None:
        unobserved = method.startswith(UNOBSERVED)
        sample = 0.0 if unobserved else self.sample
        counted = MethodMetrics(self.metrics, method, kind) if self.metrics is not None else None
        tracing = None if unobserved else self.tracing
        if counted is None and sample <= 0 and tracing is None:
            return None
        return MethodObserver(method, counted, sample, tracing)

"""The server's logs: text or JSON lines, and an access log of RPCs.

``--log-format json`` writes one object per line: ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``event`` (the message), ``pid``, the record's fields (an access line's method,
code, duration, ...) and ``exception`` with the traceback when there is one.

The access log (logger ``ferry.access``) has one line per RPC that failed (written where
the error becomes a status, ``ferry.server.interceptor``: no extra layer per call) and,
with ``--access-log-sample R``, a fraction R of the others (``ferry.server.observe``):
``method``, ``code``, ``duration_ms``, ``peer``, ``request_bytes``, ``message`` and
``incident`` (the id an INTERNAL answer names, to find its traceback). Tokens and request
contents never appear.

Failure lines are limited (``FailureLog``): at most ``--access-log-failures-per-s`` per
method and code each second, and one line a second with how many more were held back. In a
store outage every call fails, and a line per call (thousands a second) cost server CPU and
flooded the log pipeline just when both are needed. INTERNAL lines are never held back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio

access_log = logging.getLogger("ferry.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            "pid": record.process,
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(log_format: str) -> None:
    """Route the process's logs to stderr as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def log_call(
    method: str,
    code: grpc.StatusCode,
    context: grpc.aio.ServicerContext,
    request: Any,
    seconds: float,
    message: str = "",
    incident: str = "",
) -> None:
    """The access log line of one RPC: a WARNING for a failure, INFO otherwise."""
    fields: dict[str, Any] = {
        "method": method,
        "code": code.name,
        "duration_ms": round(seconds * 1e3, 3),
        "peer": context.peer(),
    }
    if request is not None and hasattr(request, "ByteSize"):
        fields["request_bytes"] = request.ByteSize()
    if message:
        fields["message"] = message
    if incident:
        fields["incident"] = incident
    access_log.log(
        logging.INFO if code is grpc.StatusCode.OK else logging.WARNING,
        "%s %s %.3f ms",
        method,
        code.name,
        fields["duration_ms"],
        extra={"fields": fields},
    )


def sampled(fraction: float) -> bool:
    """Whether to log this successful call, at ``fraction`` of them."""
    return fraction > 0 and random.random() < fraction


@dataclass
class _Window:
    started: float
    logged: int = 0
    held: int = 0


class FailureLog:
    """Which failed calls get their access-log line: at most ``per_second`` for each method
    and code in each ``window_s``; the rest are counted, and one line per window says how
    many (the metrics count every call). 0 holds nothing back. INTERNAL is always admitted:
    its incident id must lead to its traceback."""

    def __init__(
        self, per_second: int, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = per_second * window_s
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[tuple[str, grpc.StatusCode], _Window] = {}

    def admits(self, method: str, code: grpc.StatusCode) -> bool:
        """Whether a failed call gets its line (``log_call``), or only counts."""
        if not self.limit or code is grpc.StatusCode.INTERNAL:
            return True
        key = (method, code)
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window.started >= self.window_s:
            self._report_held(key)
            window = self._windows[key] = _Window(now)
        if window.logged < self.limit:
            window.logged += 1
            return True
        window.held += 1
        if window.held == 1:  # say how many at the window's end, even if none follow
            delay = window.started + self.window_s - now
            asyncio.get_running_loop().call_later(delay, self._report_held, key)
        return False

    def _report_held(self, key: tuple[str, grpc.StatusCode]) -> None:
        """One line with what the key's window holds back, if anything (called when the
        next window begins and by a timer at the window's end: whichever comes first
        finds the count, the other finds none)."""
        current = self._windows.get(key)
        if current is None or not current.held:
            return
        method, code = key
        fields = {"method": method, "code": code.name, "held_back": current.held}
        access_log.warning(
            "%s %s: %d more failed calls in %g s not logged (at most %g a second)",
            method,
            code.name,
            current.held,
            self.window_s,
            self.limit / self.window_s,
            extra={"fields": fields},
        )
        current.held = 0

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
"""

from __future__ import annotations

import json
import logging
import random
import sys
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

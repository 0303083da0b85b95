"""A receiver of MLflow's model-registry webhooks (MLflow 3.3+), for changes within ~0.1 s.

MLflow POSTs JSON ``{"entity", "action", "timestamp", "data": {"name", ...}}`` with headers
``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` and ``X-MLflow-Signature: v1,<base64
HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``. A request with a bad signature, or a
timestamp more than five minutes off (a replay), is answered 401 and ignored; a delivery id
seen within those five minutes is answered 200 and ignored (a replay of a fresh delivery); a
body that is not a JSON object is answered 400; a valid one makes the registry re-read the
model at once. MLflow sends nothing for stage transitions,
so polling stays on. The HTTP handling is deliberately tiny: one POST per connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("ferry.registry")
MAX_BODY_BYTES = 1 << 20
MAX_SKEW_S = 300


def signature_ok(
    secret: str,
    delivery_id: str,
    timestamp: str,
    body: bytes,
    signature: str,
    now_s: float | None = None,
) -> bool:
    """Whether an MLflow webhook delivery is authentic and fresh."""
    version, _, encoded = signature.partition(",")
    if version != "v1" or not delivery_id or not timestamp.isdigit():
        return False
    if abs((time.time() if now_s is None else now_s) - int(timestamp)) > MAX_SKEW_S:
        return False
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
    return hmac.compare_digest(expected, encoded.encode())


class WebhookReceiver:
    """Listens on host:port and calls ``on_model_changed(name)`` for each valid delivery."""

    def __init__(
        self, host: str, port: int, secret: str, on_model_changed: Callable[[str], Awaitable[None]]
    ) -> None:
        self.host, self.port, self.secret = host, port, secret
        self._on_model_changed = on_model_changed
        self._server: asyncio.Server | None = None
        self._seen: dict[str, float] = {}  # delivery id -> when, for MAX_SKEW_S

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status = "400 Bad Request"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            request_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines if line)
            }
            length = int(headers.get("content-length", "0"))
            if request_line.startswith("POST ") and 0 < length <= MAX_BODY_BYTES:
                body = await asyncio.wait_for(reader.readexactly(length), 5)
                status = await self._deliver(headers, body)
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
            UnicodeDecodeError,
        ):
            pass
        with contextlib.suppress(ConnectionError):
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            writer.close()

    async def _deliver(self, headers: dict[str, str], body: bytes) -> str:
        if not signature_ok(
            self.secret,
            headers.get("x-mlflow-delivery-id", ""),
            headers.get("x-mlflow-timestamp", ""),
            body,
            headers.get("x-mlflow-signature", ""),
        ):
            log.warning("webhook rejected: bad or missing signature, or a stale timestamp")
            return "401 Unauthorized"
        delivery = headers.get("x-mlflow-delivery-id", "")
        now = time.monotonic()
        self._seen = {d: t for d, t in self._seen.items() if now - t <= MAX_SKEW_S}
        if delivery in self._seen:
            # A replay within the window the timestamp allows: answered, not acted on.
            log.info("webhook: delivery %r seen before; ignored", delivery)
            return "200 OK"
        event = json.loads(body)
        data = event.get("data") if isinstance(event, dict) else None
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(event, dict):
            log.warning("webhook rejected: the body is not a JSON object")
            return "400 Bad Request"
        self._seen[delivery] = now
        if isinstance(name, str) and name:
            log.info("webhook: %s.%s on model %r", event.get("entity"), event.get("action"), name)
            await self._on_model_changed(name)
        return "200 OK"

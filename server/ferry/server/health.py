"""grpc.health.v1 kept in step with the online store: NOT_SERVING while it is unreachable
and from the moment the server starts draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from ferry.core.errors import FerryError
from ferry.stores.base import OnlineStore

log = logging.getLogger("ferry.server")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StoreHealth:
    """Probes the store every ``interval_s`` (sooner after a failed request) and publishes
    the result for the whole server ("") and each named service."""

    def __init__(
        self,
        servicer: health_aio.HealthServicer,
        store: OnlineStore,
        services: list[str],
        interval_s: float,
    ) -> None:
        self.servicer = servicer
        self.store = store
        self.services = ["", *services]
        self.interval_s = interval_s
        self.serving: bool | None = None
        self._causes_logged: set[str] = set()  # of this spell of NOT_SERVING
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._probe()
        self._task = asyncio.create_task(self._loop(), name="ferry-store-health")

    def store_down(self) -> None:
        """A request found the store unreachable: report it now and re-probe soon."""
        if self.serving is not False and self._task is not None:
            asyncio.get_running_loop().create_task(
                self._publish(False, "a request failed", "REQUEST_FAILED")
            )
        self._wake.set()

    async def drain(self) -> None:
        """Report NOT_SERVING for good: the server is shutting down."""
        if self._task is not None:
            self._task.cancel()
            # A probe loop that died must not stop the drain.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.servicer.enter_graceful_shutdown()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            await self._probe()
            if not self.serving:
                await asyncio.sleep(min(self.interval_s, 0.1))

    async def _probe(self) -> None:
        try:
            await asyncio.wait_for(self.store.ping(), max(self.interval_s, 0.2))
        except FerryError as err:
            await self._publish(False, str(err), err.reason)
        except TimeoutError:
            await self._publish(False, "ping timed out", "PING_TIMED_OUT")
        except Exception as err:
            # Whatever a store raises, the probe goes on: a dead probe would leave the
            # server NOT_SERVING for good after the store recovers. The traceback once per
            # spell of NOT_SERVING, as the cause's line: one per probe would flood the log.
            if "UNEXPECTED" not in self._causes_logged:
                log.exception("health: the store's ping raised an unexpected error")
            await self._publish(False, f"unexpected {type(err).__name__}: {err}", "UNEXPECTED")
        else:
            await self._publish(True, "the online store answers")

    async def _publish(self, serving: bool, why: str, cause: str = "") -> None:
        """Publish a change, and log it; while NOT_SERVING, log each new cause once too (a
        first probe that timed out hid that the table was missing, say), so an outage is
        a few lines, not one per probe."""
        changed = serving != self.serving
        if not changed and (serving or cause in self._causes_logged):
            return
        self._causes_logged = set() if serving else {*self._causes_logged, cause}
        log.log(
            logging.INFO if serving else logging.WARNING,
            "health: %s (%s)",
            "SERVING" if serving else "NOT_SERVING",
            why,
        )
        if not changed:
            return
        self.serving = serving
        for service in self.services:
            await self.servicer.set(service, SERVING if serving else NOT_SERVING)

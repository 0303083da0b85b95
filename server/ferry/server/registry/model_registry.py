"""Which model version is live, answered from memory and pushed to watchers on change.

A ``ModelRegistry`` keeps, per registered model in use, a snapshot of its aliases, the
latest version of each classic stage, and the versions those point at (plus any version
asked for by number). The first ask of a model loads it; afterwards every model in use is
re-read every ``poll_interval_s`` (and at once when a webhook says it changed). A poll
compares whole snapshots: moving an alias changes no timestamp in MLflow, so nothing less
would notice it. When the source cannot be reached, the last known snapshot keeps being
served, marked stale; a model never seen before is then UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ferry.core.errors import FerryError
from ferry.core.model_binding import FEATURE_SERVICE_TAG
from ferry.server.errors import RegistryUnavailableError, UnknownModelError

log = logging.getLogger("ferry.registry")


@dataclass(frozen=True)
class ModelVersionInfo:
    """One model version as the registry knows it (timestamps in µs)."""

    name: str
    version: int
    aliases: tuple[str, ...] = ()
    stage: str = ""
    run_id: str = ""
    source: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    creation_micros: int = 0
    last_updated_micros: int = 0

    @property
    def feature_service(self) -> str:
        return dict(self.tags).get(FEATURE_SERVICE_TAG, "")


@dataclass(frozen=True)
class ModelSnapshot:
    """What a model's aliases and stages point at, and those versions."""

    aliases: dict[str, int] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)
    versions: dict[int, ModelVersionInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class Selector:
    """Exactly one of alias, stage or version."""

    alias: str = ""
    stage: str = ""
    version: int = 0

    def __str__(self) -> str:
        if self.alias:
            return f"alias {self.alias!r}"
        return f"stage {self.stage!r}" if self.stage else f"version {self.version}"


@dataclass(frozen=True)
class Resolution:
    """A selector's answer: the version, whether it may be outdated, and when it was read."""

    version: ModelVersionInfo
    stale: bool
    refreshed_at_micros: int


class RegistrySource(Protocol):
    """Reads a model registry. Blocking; the registry runs it on worker threads."""

    def snapshot(self, name: str, extra_versions: frozenset[int]) -> ModelSnapshot:
        """The model's current snapshot, including ``extra_versions``.

        Raises:
            UnknownModelError: no such model (or an extra version that does not exist).
            RegistryUnavailableError: the registry cannot be reached.
        """


@dataclass
class _Model:
    snapshot: ModelSnapshot
    extra_versions: frozenset[int]
    refreshed_at_micros: int
    stale: bool = False
    generation: int = 0


class ModelRegistry:
    """The in-memory view of the model registry, refreshed by polling and webhooks."""

    def __init__(self, source: RegistrySource, poll_interval_s: float = 1.0) -> None:
        self.source = source
        self.poll_interval_s = poll_interval_s
        self._models: dict[str, _Model] = {}
        self._changed = asyncio.Condition()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ferry-registry")
        self._locks: dict[str, asyncio.Lock] = {}
        self._poller: asyncio.Task[None] | None = None
        self.last_success_micros = 0
        """When a read of the source last succeeded (µs since the epoch), 0 if never."""
        self.span: Callable[[str, Mapping[str, Any]], AbstractContextManager[Any]] | None = None
        """Opens a tracing span around each resolution, when the server traces."""

    async def start(self) -> None:
        self._poller = asyncio.create_task(self._poll(), name="ferry-registry-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def resolve(self, name: str, selector: Selector) -> Resolution:
        """The version ``selector`` points at now.

        Raises:
            UnknownModelError: unknown model, alias, stage or version.
            RegistryUnavailableError: the registry is down and the model was never loaded.
        """
        if self.span is None:
            return await self._resolve(name, selector)
        with self.span("registry.resolve", {"ferry.model": name}):
            return await self._resolve(name, selector)

    async def _resolve(self, name: str, selector: Selector) -> Resolution:
        model = self._models.get(name)
        if model is None:
            model = await self.refresh(name)
        if selector.version and selector.version not in model.snapshot.versions:
            model = await self.refresh(name, extra=selector.version)
        return Resolution(
            _pick(name, model.snapshot, selector), model.stale, model.refreshed_at_micros
        )

    async def watch(self, name: str, selector: Selector) -> AsyncIterator[Resolution]:
        """The current resolution, then every change of it, until the caller stops."""
        last: Resolution | None = None
        while True:
            seen = self._models[name].generation if name in self._models else -1
            current = await self.resolve(name, selector)
            if last is None or (current.version, current.stale) != (last.version, last.stale):
                last = current
                yield current
            await self._wait_for_change(name, seen)

    async def _wait_for_change(self, name: str, seen: int) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: name in self._models and self._models[name].generation != seen
            )

    def models(self) -> list[str]:
        return list(self._models)

    def cache_state(self) -> tuple[int, int]:
        """(stale models, oldest refresh in µs since the epoch or 0): how far behind the
        registry the answers may be."""
        models = list(self._models.values())
        stale = sum(1 for model in models if model.stale)
        oldest = min((model.refreshed_at_micros for model in models), default=0)
        return stale, oldest

    async def changed(self, name: str) -> None:
        """Someone (a webhook) says ``name`` changed: re-read it now if it is in use."""
        if name in self._models:
            with contextlib.suppress(FerryError):
                await self.refresh(name)

    async def refresh(self, name: str, extra: int = 0) -> _Model:
        """Re-read one model now; on failure keep (and mark stale) what was known."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            known = self._models.get(name)
            extras = (known.extra_versions if known else frozenset()) | (
                {extra} if extra else set()
            )
            loop = asyncio.get_running_loop()
            try:
                snapshot = await loop.run_in_executor(
                    self._executor, self.source.snapshot, name, frozenset(extras)
                )
            except RegistryUnavailableError as err:
                if known is None:
                    raise
                if not known.stale:
                    log.warning(
                        "model registry unreachable, serving the last known state of %r: %s",
                        name,
                        err,
                    )
                    await self._publish(
                        name, replace(known, stale=True, generation=known.generation + 1)
                    )
                return self._models[name]
            except UnknownModelError:
                if known is not None and extra and extra not in known.snapshot.versions:
                    raise  # an unknown version number: the model itself is fine
                if known is not None:
                    log.warning("model %r disappeared from the registry", name)
                    self._models.pop(name, None)
                raise
            now = time.time_ns() // 1000
            self.last_success_micros = now
            if known is None or snapshot != known.snapshot or known.stale:
                model = _Model(
                    snapshot,
                    frozenset(extras),
                    now,
                    generation=(known.generation + 1) if known else 0,
                )
                if known is not None:
                    log.info(
                        "model %r changed: aliases %s, stages %s",
                        name,
                        snapshot.aliases,
                        snapshot.stages,
                    )
                await self._publish(name, model)
            else:
                known.refreshed_at_micros = now
                known.extra_versions = frozenset(extras)
            return self._models[name]

    async def _publish(self, name: str, model: _Model) -> None:
        async with self._changed:
            self._models[name] = model
            self._changed.notify_all()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            for name in list(self._models):
                with contextlib.suppress(FerryError):
                    await self.refresh(name)


def _pick(name: str, snapshot: ModelSnapshot, selector: Selector) -> ModelVersionInfo:
    if selector.alias:
        number = snapshot.aliases.get(selector.alias)
    elif selector.stage:
        wanted = selector.stage.lower()
        number = next((v for s, v in snapshot.stages.items() if s.lower() == wanted), None)
    else:
        number = selector.version
    if number is None or number not in snapshot.versions:
        raise UnknownModelError(
            f"model {name!r} has no {selector}", model=name, selector=str(selector)
        )
    return snapshot.versions[number]

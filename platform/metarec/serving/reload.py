"""Production follows the registry: a stage's service swaps in a version promoted later.

A service started for a stage (``--stage production``, no pinned ``--version``) asks the
registry every ``serving.registry_poll_seconds`` which version is in that stage. When it is not
the served one, the new version is loaded (checksum verified, as at start) and warmed up in a
worker thread while the old one keeps answering; then the :class:`EngineSlot` swaps the engine
at once. Requests already in flight finish on the old engine (each holds a lease on the engine
it started with); once they are done (or after ``drain_timeout`` seconds) the old engine's
micro-batchers are closed. A version that fails to load is logged and counted
(``metarec_model_reloads_total{outcome="failed"}``), the old version goes on serving, and the
failed version is tried again only after ``retry_seconds``. A pinned version never changes: no
follower runs for it.

The module is independent of torch and BentoML: the engine, the registry query and the loader
are passed in, so the swap logic is tested without processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter

from metarec import metrics_contract as contract

logger = logging.getLogger(__name__)

RELOADS = "metarec_model_reloads_total"  # counter {model_version, outcome}
OUTCOME = "outcome"  # "loaded", "failed" (the version did not load), "poll_failed"
LOADED, FAILED, POLL_FAILED = "loaded", "failed", "poll_failed"
# A version that failed to load is not tried again before this many seconds.
RETRY_FAILED_AFTER_S = 300.0


class Engine(Protocol):
    """What the slot needs of an engine: a way to stop its background work."""

    async def close(self) -> None:
        """Stop the engine's micro-batchers."""


E = TypeVar("E", bound=Engine)


@dataclass
class _Tenure(Generic[E]):
    """One engine's time in the slot: the requests it still answers."""

    engine: E
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class EngineSlot(Generic[E]):
    """The engine that answers new requests, swapped atomically (used on one event loop)."""

    def __init__(self, engine: E) -> None:
        """Hold ``engine``."""
        self._tenure = _Tenure(engine)

    @property
    def engine(self) -> E:
        """The engine new requests go to."""
        return self._tenure.engine

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[E]:
        """The current engine, held until the block ends (a swap waits for it to end)."""
        tenure = self._tenure
        tenure.in_flight += 1
        try:
            yield tenure.engine
        finally:
            tenure.in_flight -= 1
            if tenure.in_flight == 0:
                tenure.idle.set()

    async def swap(self, engine: E, *, drain_timeout: float) -> E:
        """Send new requests to ``engine``; close the old one once its requests are answered.

        Args:
            engine: The new engine (loaded and warmed up).
            drain_timeout: Longest wait for the old engine's requests in flight (seconds).

        Returns:
            The old engine (closed).
        """
        old, self._tenure = self._tenure, _Tenure(engine)
        if old.in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(old.idle.wait(), drain_timeout)
        await old.engine.close()
        return old.engine


class ReloadMetrics:
    """``metarec_model_reloads_total``: versions swapped in, failed loads and failed polls."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        """Create the counter (in ``registry``, default a new private one)."""
        self.registry = registry or CollectorRegistry()
        self.reloads = Counter(
            RELOADS,
            "Registry follow-ups: a version swapped in, a version that failed to load (the "
            "old one kept serving), or a registry poll that failed.",
            [contract.MODEL_VERSION, OUTCOME],
            registry=self.registry,
        )

    def observe(self, model_version: str, outcome: str) -> None:
        """Count one follow-up of ``model_version``."""
        self.reloads.labels(model_version, outcome).inc()


@dataclass(frozen=True)
class FollowerParts(Generic[E]):
    """What a :class:`RegistryFollower` calls (the blocking ones run in a worker thread).

    Attributes:
        staged: The tag of the version now in the followed stage (blocking registry query).
        load: Load, verify and warm up a version by tag into a new engine (blocking).
        tag: The tag an engine serves.
        on_swap: Called on the event loop with the new engine just before it takes requests
            (bind its metrics).
    """

    staged: Callable[[], str]
    load: Callable[[str], E]
    tag: Callable[[E], str]
    on_swap: Callable[[E], None] = lambda _engine: None


class RegistryFollower(Generic[E]):
    """Poll the registry and swap in the stage's new version (see the module docstring)."""

    def __init__(
        self,
        slot: EngineSlot[E],
        parts: FollowerParts[E],
        *,
        poll_seconds: float,
        drain_timeout: float,
        metrics: ReloadMetrics,
        retry_seconds: float = RETRY_FAILED_AFTER_S,
    ) -> None:
        """Follow the stage for ``slot``.

        Args:
            slot: Where the served engine lives.
            parts: The registry query, the loader and the swap hook.
            poll_seconds: Seconds between two registry queries.
            drain_timeout: Longest wait for the old engine's requests in flight.
            metrics: Where reloads and failures are counted.
            retry_seconds: A version that failed to load is not tried again before this.
        """
        self.slot = slot
        self.parts = parts
        self.poll_seconds = poll_seconds
        self.drain_timeout = drain_timeout
        self.metrics = metrics
        self.retry_seconds = retry_seconds
        self._failed: dict[str, float] = {}

    def _recently_failed(self, tag: str) -> bool:
        failed_at = self._failed.get(tag)
        return failed_at is not None and time.monotonic() - failed_at < self.retry_seconds

    async def check(self) -> bool:
        """Query the stage once; load and swap in its version when it changed.

        Returns:
            Whether a new version was swapped in.

        Raises:
            Exception: The registry query failed (the caller retries on the next poll).
        """
        wanted = await asyncio.to_thread(self.parts.staged)
        served = self.parts.tag(self.slot.engine)
        if wanted == served or self._recently_failed(wanted):
            return False
        logger.info("Stage now holds %s (serving %s): loading it.", wanted, served)
        try:
            engine = await asyncio.to_thread(self.parts.load, wanted)
        except Exception:
            logger.exception("Loading %s failed; %s goes on serving.", wanted, served)
            self._failed[wanted] = time.monotonic()
            self.metrics.observe(wanted, FAILED)
            return False
        self._failed.pop(wanted, None)
        self.parts.on_swap(engine)
        await self.slot.swap(engine, drain_timeout=self.drain_timeout)
        self.metrics.observe(wanted, LOADED)
        logger.info("Now serving %s (was %s).", wanted, served)
        return True

    async def run(self) -> None:
        """Check every ``poll_seconds`` until cancelled (a failed poll is retried next time)."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.check()
            except Exception as exc:  # registry unreachable, or no version in the stage
                logger.warning(
                    "Registry poll failed (%s); retried in %s s.", exc, self.poll_seconds
                )
                self.metrics.observe(self.parts.tag(self.slot.engine), POLL_FAILED)

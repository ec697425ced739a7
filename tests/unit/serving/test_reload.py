"""The engine swap and the registry follower, without processes (fake engines and registry)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from metarec.serving.reload import (
    FAILED,
    LOADED,
    POLL_FAILED,
    RELOADS,
    EngineSlot,
    FollowerParts,
    RegistryFollower,
    ReloadMetrics,
)


class FakeEngine:
    """An engine that records when it is closed and answers after a gate opens."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.closed = False
        self.gate = asyncio.Event()

    async def answer(self) -> str:
        await self.gate.wait()
        assert not self.closed, "answered on a closed engine"
        return self.tag

    async def close(self) -> None:
        self.closed = True


class FakeRegistry:
    """The stage's version, and how many times versions were loaded."""

    def __init__(self, staged: str, *, broken: set[str] | None = None) -> None:
        self.staged = staged
        self.broken = broken or set()
        self.loads: list[str] = []
        self.down = False

    def query(self) -> str:
        if self.down:
            raise ConnectionError("registry down")
        return self.staged

    def load(self, tag: str) -> FakeEngine:
        self.loads.append(tag)
        if tag in self.broken:
            raise ValueError(f"{tag}: checksum mismatch")
        engine = FakeEngine(tag)
        engine.gate.set()
        return engine


def reloads(metrics: ReloadMetrics, tag: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(RELOADS, {"model_version": tag, "outcome": outcome})
    return value or 0.0


def follower(
    registry: FakeRegistry, slot: EngineSlot[FakeEngine], **options: float
) -> tuple[RegistryFollower[FakeEngine], ReloadMetrics, list[str]]:
    swapped: list[str] = []
    parts = FollowerParts(
        staged=registry.query,
        load=registry.load,
        tag=lambda engine: engine.tag,
        on_swap=lambda engine: swapped.append(engine.tag),
    )
    metrics = ReloadMetrics()
    options = {"poll_seconds": 0.01, "drain_timeout": 5.0, **options}
    return RegistryFollower(slot, parts, metrics=metrics, **options), metrics, swapped


def test_requests_in_flight_finish_on_the_old_engine_new_ones_go_to_the_new():
    async def scenario() -> None:
        old, new = FakeEngine("m:v1"), FakeEngine("m:v2")
        new.gate.set()
        slot = EngineSlot(old)

        async def request() -> str:
            async with slot.lease() as engine:
                return await engine.answer()

        in_flight = asyncio.create_task(request())
        await asyncio.sleep(0)  # the request holds its lease on the old engine
        swap = asyncio.create_task(slot.swap(new, drain_timeout=5.0))
        await asyncio.sleep(0.05)
        assert slot.engine is new
        assert await request() == "m:v2"  # a request after the swap: the new engine
        assert not old.closed and not swap.done()  # the old one waits for its request
        old.gate.set()
        assert await in_flight == "m:v1"
        assert await swap is old
        assert old.closed and not new.closed

    asyncio.run(scenario())


def test_an_idle_old_engine_is_closed_at_once_and_a_stuck_one_after_the_drain_timeout():
    async def scenario() -> None:
        first, second, third = FakeEngine("m:v1"), FakeEngine("m:v2"), FakeEngine("m:v3")
        slot = EngineSlot(first)
        await asyncio.wait_for(slot.swap(second, drain_timeout=60.0), 1.0)
        assert first.closed
        async with slot.lease():  # a request that never ends
            await asyncio.wait_for(slot.swap(third, drain_timeout=0.05), 1.0)
            assert second.closed and slot.engine is third

    asyncio.run(scenario())


def test_the_follower_swaps_in_the_stages_new_version_once():
    async def scenario() -> None:
        registry = FakeRegistry("m:v1")
        slot = EngineSlot(registry.load("m:v1"))
        follow, metrics, swapped = follower(registry, slot)
        assert await follow.check() is False  # unchanged: nothing loaded
        assert registry.loads == ["m:v1"]
        registry.staged = "m:v2"
        assert await follow.check() is True
        assert slot.engine.tag == "m:v2" and swapped == ["m:v2"]
        assert await follow.check() is False
        assert registry.loads == ["m:v1", "m:v2"]
        assert reloads(metrics, "m:v2", LOADED) == 1

    asyncio.run(scenario())


def test_a_version_that_fails_to_load_leaves_the_old_one_serving_and_is_counted():
    async def scenario() -> None:
        registry = FakeRegistry("m:v1", broken={"m:v2"})
        old = registry.load("m:v1")
        slot = EngineSlot(old)
        follow, metrics, swapped = follower(registry, slot, retry_seconds=60.0)
        registry.staged = "m:v2"
        assert await follow.check() is False
        assert slot.engine is old and not old.closed and swapped == []
        assert reloads(metrics, "m:v2", FAILED) == 1
        assert await follow.check() is False  # not tried again before retry_seconds
        assert registry.loads == ["m:v1", "m:v2"]
        follow.retry_seconds = 0.0
        registry.broken.clear()  # e.g. the artifact store is back
        assert await follow.check() is True
        assert slot.engine.tag == "m:v2" and old.closed

    asyncio.run(scenario())


def test_the_loop_survives_a_registry_outage_and_follows_afterwards():
    async def scenario() -> None:
        registry = FakeRegistry("m:v1")
        slot = EngineSlot(registry.load("m:v1"))
        follow, metrics, _ = follower(registry, slot)
        registry.down = True
        task = asyncio.create_task(follow.run())
        try:
            await asyncio.sleep(0.1)
            assert reloads(metrics, "m:v1", POLL_FAILED) >= 1
            registry.staged, registry.down = "m:v3", False
            for _ in range(200):
                if slot.engine.tag == "m:v3":
                    break
                await asyncio.sleep(0.01)
            assert slot.engine.tag == "m:v3"
        finally:
            task.cancel()

    asyncio.run(scenario())


def service_follower(**env: str) -> dict:
    """Whether the service would follow the registry, read in a fresh interpreter."""
    code = (
        "import json; from metarec.config import load_settings; "
        "import metarec.serving.service as s; from metarec.serving.reload import EngineSlot; "
        "svc = s.AdaptationService.inner.__new__(s.AdaptationService.inner); "
        "svc.settings = load_settings(); svc.slot = EngineSlot(None); f = svc._follower(); "
        "print(json.dumps(None if f is None else {'poll': f.poll_seconds}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_only_a_stage_service_with_polling_on_follows_the_registry():
    clean = {"METAREC_SERVING__VERSION": "", "METAREC_SERVING__STAGE": "production"}
    assert service_follower(**clean, METAREC_SERVING__REGISTRY_POLL_SECONDS="2.5") == {"poll": 2.5}
    assert service_follower(**clean, METAREC_SERVING__REGISTRY_POLL_SECONDS="0") is None
    pinned = {**clean, "METAREC_SERVING__VERSION": "metarec:v1"}
    assert service_follower(**pinned) is None

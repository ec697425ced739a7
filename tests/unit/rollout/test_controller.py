"""Controller reconcile steps with a scripted metric source and an in-memory router."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from metarec.errors import RolloutConflictError, RolloutError
from metarec.registry import Action, Stage, VersionRef
from metarec.rollout import Phase, RolloutSpec, ServiceWindow, WindowMetrics
from metarec.rollout.controller import RolloutController, start_rollout
from metarec.rollout.routers import Weights
from metarec.rollout.store import RolloutStore
from metarec.testing.registry import register_fixture

SPEC = RolloutSpec(steps=(50, 100), interval_s=10, min_requests=10, failure_threshold=2)


class MemoryRouter:
    def __init__(self) -> None:
        self.current = Weights(production=100, canary=0)
        self.calls: list[Weights] = []

    def set_weights(self, *, production: int, canary: int) -> None:
        self.current = Weights(production=production, canary=canary)
        self.calls.append(self.current)

    def weights(self) -> Weights:
        return self.current

    def close(self) -> None:
        pass


class ScriptedMetrics:
    def __init__(self, errors: int = 0) -> None:
        self.errors = errors
        self.windows_started = 0

    def start_window(self, state) -> None:
        self.windows_started += 1

    def read_window(self, state, *, window_s: float) -> WindowMetrics:
        return WindowMetrics(
            window_s=window_s,
            canary=ServiceWindow(requests=100, errors=self.errors, p99_ms=10),
            production=ServiceWindow(requests=100, errors=0, p99_ms=10),
        )


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 11) -> None:
        self.now += timedelta(seconds=seconds)


def make(registry, errors=0, *, spec=SPEC, metrics=None):
    store = RolloutStore(engine=registry.engine)
    router, clock = MemoryRouter(), Clock()
    metrics = metrics or ScriptedMetrics(errors)
    controller = RolloutController(
        registry=registry, store=store, router=router, metrics=metrics, clock=clock
    )
    state = start_rollout(
        registry=registry,
        store=store,
        ref=VersionRef(model="metarec", version=2),
        spec=spec,
        actor="t",
    )
    return controller, store, router, metrics, clock, state


def test_steps_then_promotion_with_verdict(registry):
    controller, _store, router, _metrics, clock, state = make(registry)
    assert controller.reconcile(state.id).phase is Phase.PROGRESSING
    assert router.current == Weights(production=50, canary=50)
    assert controller.reconcile(state.id).step_index == 0  # window not over: waits
    clock.tick()
    assert controller.reconcile(state.id).canary_weight == 100
    clock.tick()
    final = controller.reconcile(state.id)
    assert final.phase is Phase.SUCCEEDED and router.current.canary == 100
    entry = registry.history("metarec")[-1]
    assert entry.action is Action.PROMOTE and entry.actor == "rollout-controller"
    assert [w["canary_weight"] for w in entry.evidence["canary_verdict"]["windows"]] == [50, 100]
    assert controller.reconcile(state.id).phase is Phase.SUCCEEDED  # terminal: no-op


def test_promoting_is_idempotent_after_a_crash(registry):
    controller, store, _router, _metrics, _clock, state = make(registry)
    # The crash happened after registry.promote and before the state was written.
    registry.promote(VersionRef(model="metarec", version=2), actor="t", reason="crash")
    store.save(store.get(state.id).model_copy(update={"phase": Phase.PROMOTING}))
    before = len(registry.history("metarec"))
    assert controller.reconcile(state.id).phase is Phase.SUCCEEDED
    assert len(registry.history("metarec")) == before  # no second promotion


def test_production_changed_meanwhile_fails_the_rollout(registry, tmp_path):
    controller, store, router, _metrics, _clock, state = make(registry)
    register_fixture(registry, tmp_path / "a3", seed=3, mae=0.76)
    registry.promote(VersionRef(model="metarec", version=3), actor="t", reason="hotfix")
    store.save(store.get(state.id).model_copy(update={"phase": Phase.PROMOTING}))
    final = controller.reconcile(state.id)
    assert final.phase is Phase.FAILED and "production changed" in final.message
    assert router.current == Weights(production=100, canary=0)
    assert registry.production("metarec").version == 3


def test_failures_roll_back_and_a_restarted_controller_resumes(registry):
    controller, store, router, metrics, clock, state = make(registry, errors=50)
    controller.reconcile(state.id)
    clock.tick()
    assert controller.reconcile(state.id).failed_checks == 1
    # A new controller (restart): re-asserts the weights, opens a new window, keeps the count.
    router.current = Weights(production=100, canary=0)
    restarted = RolloutController(
        registry=registry, store=store, router=router, metrics=metrics, clock=clock
    )
    resumed = restarted.reconcile(state.id)
    assert resumed.failed_checks == 1 and router.current == Weights(production=50, canary=50)
    clock.tick()
    final = restarted.reconcile(state.id)
    assert final.phase is Phase.FAILED and router.current == Weights(production=100, canary=0)
    assert final.verdict.status == "failed" and "error_rate" in final.verdict.reason
    assert registry.get_version(VersionRef(model="metarec", version=2)).stage is Stage.STAGING


def test_only_staging_versions_and_one_active_rollout(registry):
    store = RolloutStore(engine=registry.engine)
    with pytest.raises(RolloutError, match="only a staging version"):
        start_rollout(
            registry=registry,
            store=store,
            ref=VersionRef(model="metarec", version=1),
            spec=SPEC,
            actor="t",
        )
    start_rollout(
        registry=registry,
        store=store,
        ref=VersionRef(model="metarec", version=2),
        spec=SPEC,
        actor="t",
    )
    with pytest.raises(RolloutConflictError, match="rollout abort"):
        start_rollout(
            registry=registry,
            store=store,
            ref=VersionRef(model="metarec", version=2),
            spec=SPEC,
            actor="t",
        )


class HitMetrics(ScriptedMetrics):
    """Healthy traffic with scripted positive feedback and hits on both sides."""

    def __init__(self) -> None:
        super().__init__()
        self.canary = (40, 0.30)  # (positive events, hit rate)
        self.production = (40, 0.32)

    def read_window(self, state, *, window_s: float) -> WindowMetrics:
        metrics = super().read_window(state, window_s=window_s)
        sides = {}
        for side, (positives, rate) in (("canary", self.canary), ("production", self.production)):
            window = getattr(metrics, side)
            sides[side] = window.model_copy(
                update={"positive_feedback": positives, "hits": positives * rate}
            )
        return metrics.model_copy(update=sides)


def test_the_hit_rate_baseline_survives_a_restart_and_serves_the_full_canary_step(registry):
    store = RolloutStore(engine=registry.engine)
    router, metrics, clock = MemoryRouter(), HitMetrics(), Clock()
    spec = SPEC.model_copy(update={"max_online_hit_rate_drop": 0.05, "min_positive_feedback": 20})
    state = start_rollout(
        registry=registry,
        store=store,
        ref=VersionRef(model="metarec", version=2),
        spec=spec,
        actor="t",
    )

    def controller() -> RolloutController:
        return RolloutController(
            registry=registry, store=store, router=router, metrics=metrics, clock=clock
        )

    first = controller()
    first.reconcile(state.id)
    clock.tick()
    assert first.reconcile(state.id).canary_weight == 100  # 50 %: production measured 0.32
    passed = next(e for e in store.events(state.id) if e.action == "passed")
    assert passed.metrics["production_hit_rate"] == pytest.approx(0.32)
    assert passed.metrics["canary"]["online_hit_rate"] == pytest.approx(0.30)
    # A restarted controller at 100 %: production gets no feedback any more; the baseline
    # comes back from the events, and a canary far below it fails the window.
    metrics.production = (0, 0.0)
    metrics.canary = (40, 0.10)
    restarted = controller()
    restarted.reconcile(state.id)  # resume: new window
    clock.tick()
    retried = restarted.reconcile(state.id)
    assert retried.failed_checks == 1, retried.message
    assert "online_hit_rate=-0.22 < -0.05" in retried.message
    metrics.canary = (40, 0.31)
    clock.tick()
    final = restarted.reconcile(state.id)
    assert final.phase is Phase.SUCCEEDED
    checks = {c.name: c for c in final.verdict.final_checks}
    assert checks["online_hit_rate"].value == pytest.approx(-0.01)

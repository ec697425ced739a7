"""``reconcile_all`` with a fault injected at every step (router, metrics, registry, store).

Each rollout is driven tick by tick until it ends; the end state must agree with the registry
(production version, stages) and its ledger (exactly one ``promote`` when promoted), and the
router's weights with the persisted canary weight.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from metarec.errors import (
    MetricSourceError,
    RegistryError,
    RolloutError,
    RolloutStaleStateError,
    RouterError,
)
from metarec.registry import Action, Stage, VersionRef
from metarec.rollout import Phase, RolloutSpec
from metarec.rollout.controller import RolloutController, start_rollout
from metarec.rollout.routers import Weights
from metarec.rollout.store import RolloutStore
from metarec.rollout.types import EventKind
from test_controller import Clock, MemoryRouter, ScriptedMetrics

SPEC = RolloutSpec(steps=(50, 100), interval_s=10, min_requests=10, failure_threshold=2)
V2 = VersionRef(model="metarec", version=2)
ERRORS = {"router": RouterError, "metrics": MetricSourceError, "registry": RegistryError}


class Faults:
    """Counts calls per point (``store.save``); raises at the planned call numbers.

    ``plan`` maps a point to the call numbers that fail; a point ending in ``:after`` fails
    after the real call returned (committed), e.g. ``registry.promote:after``.
    """

    def __init__(
        self, plan: dict[str, set[int]] | None = None, *, rate: float = 0.0, seed: int = 0
    ) -> None:
        self.plan = plan or {}
        self.rate = rate  # besides the plan: the share of checks that fail at random
        self.random = random.Random(seed)
        self.calls: dict[str, int] = {}
        self.fired: list[str] = []

    def check(self, point: str, when: str) -> None:
        key = point if when == "before" else f"{point}:after"
        if when == "before":
            self.calls[point] = self.calls.get(point, 0) + 1
        number = self.calls[point]
        planned = number in self.plan.get(key, set())
        if planned or self.random.random() < self.rate:
            self.fired.append(f"{key}#{number}")
            error = ERRORS.get(point.split(".")[0], RolloutError)
            raise error(f"injected fault at {key} (call {number}).", fix="none: a test fault.")


class Faulty:
    """Wraps ``target``: every method call passes :meth:`Faults.check` before and after."""

    def __init__(self, target: Any, name: str, faults: Faults) -> None:
        self._target, self._name, self._faults = target, name, faults

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._target, attribute)
        if not callable(value):
            return value
        point = f"{self._name}.{attribute}"

        def call(*args: Any, **kwargs: Any) -> Any:
            self._faults.check(point, "before")
            result = value(*args, **kwargs)
            self._faults.check(point, "after")
            return result

        return call


class Rollout:
    """A rollout of v2 (v1 in production) under a faulty controller, with real collaborators."""

    def __init__(self, registry, faults: Faults, *, metrics: Any = None) -> None:
        self.registry, self.faults = registry, faults
        self.store = RolloutStore(engine=registry.engine)
        self.router, self.clock = MemoryRouter(), Clock()
        self.metrics = metrics or ScriptedMetrics()
        self.controller = RolloutController(
            registry=Faulty(registry, "registry", faults),
            store=Faulty(self.store, "store", faults),
            router=Faulty(self.router, "router", faults),
            metrics=Faulty(self.metrics, "metrics", faults),
            clock=self.clock,
        )
        self.state = start_rollout(
            registry=registry, store=self.store, ref=V2, spec=SPEC, actor="t"
        )

    def drive(self, *, ticks: int = 60) -> Any:
        """Tick (reconcile_all, then 11 s pass) until the rollout ends; return its state."""
        for _ in range(ticks):
            self.controller.reconcile_all()
            self.clock.tick()
            if self.store.get(self.state.id).phase.terminal:
                break
        return self.store.get(self.state.id)

    def assert_consistent(self, expected: Phase) -> None:
        """The end state agrees with the registry, its ledger, the router and the timeline."""
        final = self.store.get(self.state.id)
        assert final.phase is expected, (final.message, self.faults.fired)
        promotions = [
            e for e in self.registry.history("metarec", version=2) if e.action is Action.PROMOTE
        ]
        weights = Weights(production=100 - final.canary_weight, canary=final.canary_weight)
        assert self.router.current == weights
        if expected is Phase.SUCCEEDED:
            assert self.registry.production_version("metarec") == 2
            assert len(promotions) == 1
            assert promotions[0].evidence["canary_verdict"]["rollout_id"] == final.id
            assert final.canary_weight == 100 and final.verdict.status == "passed"
        else:
            assert self.registry.production_version("metarec") == 1
            assert promotions == []
            assert self.registry.get_version(V2).stage is Stage.STAGING
            assert final.canary_weight == 0 and final.verdict.status == "failed"
        ends = [e for e in self.store.events(final.id) if e.action in TERMINAL_EVENTS]
        assert [e.action for e in ends] == [EventKind.ended(expected)]
        assert self.store.events(final.id)[-1].action == EventKind.ended(expected)


TERMINAL_EVENTS = {EventKind.SUCCEEDED, EventKind.FAILED, EventKind.ABORTED}

# Without faults, a healthy rollout (steps 50, 100) makes these calls in this order (every
# tick starts with store.active, store.get and registry.production_version):
# tick 1: registry.get_version#1, router.set_weights#1 (50 %), metrics.start_window#1,
#         store.save#1 (Progressing);
# tick 2: metrics.read_window#1, set_weights#2 (100 %), start_window#2, save#2;
# tick 3: read_window#2, save#3 (Promoting), get_version#2, registry.promote#1,
#         set_weights#3, save#4 (Succeeded).
HEALTHY_FAULTS = [
    *[f"router.set_weights={n}" for n in (1, 2, 3)],
    *[f"metrics.start_window={n}" for n in (1, 2)],
    *[f"metrics.read_window={n}" for n in (1, 2)],
    "registry.promote=1",
    "registry.promote:after=1",
    *[f"registry.production_version={n}" for n in (1, 2, 3)],
    *[f"registry.get_version={n}" for n in (1, 2)],
    *[f"store.save={n}" for n in (1, 2, 3, 4)],
    *[f"store.save:after={n}" for n in (1, 2, 3, 4)],
    *[f"store.get={n}" for n in (1, 3)],
    "store.events=1",
    "store.active=2",
]


def plan_of(fault: str) -> dict[str, set[int]]:
    point, number = fault.split("=")
    return {point: {int(number)}}


@pytest.mark.parametrize("fault", HEALTHY_FAULTS)
def test_a_fault_at_any_step_of_a_passing_rollout_still_ends_promoted_once(registry, fault):
    rollout = Rollout(registry, Faults(plan_of(fault)))
    rollout.drive()
    assert rollout.faults.fired == [f"{fault.split('=')[0]}#{fault.split('=')[1]}"]
    rollout.assert_consistent(Phase.SUCCEEDED)


# A failing canary (every window 50 % errors, threshold 2): tick 1 starts at 50 %, tick 2
# retries (start_window#2, save#2), tick 3 decides: save#3 (RollingBack), set_weights#2 (0 %),
# save#4 (Failed).
FAILING_FAULTS = [
    "router.set_weights=2",
    "metrics.read_window=2",
    "metrics.start_window=2",
    *[f"store.save={n}" for n in (2, 3, 4)],
    *[f"store.save:after={n}" for n in (2, 3, 4)],
    "registry.production_version=3",
]


@pytest.mark.parametrize("fault", FAILING_FAULTS)
def test_a_fault_at_any_step_of_a_failing_rollout_ends_failed_at_weight_zero(registry, fault):
    rollout = Rollout(registry, Faults(plan_of(fault)), metrics=ScriptedMetrics(errors=50))
    rollout.drive()
    assert len(rollout.faults.fired) == 1
    rollout.assert_consistent(Phase.FAILED)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("errors", [0, 50])
def test_random_faults_everywhere_end_consistent(registry, seed, errors):
    faults = Faults(rate=0.15, seed=seed)
    rollout = Rollout(registry, faults, metrics=ScriptedMetrics(errors=errors))
    rollout.drive(ticks=200)
    assert faults.fired  # the run really was disturbed
    rollout.assert_consistent(Phase.SUCCEEDED if errors == 0 else Phase.FAILED)


class SpikeAfterPromotion(ScriptedMetrics):
    """Healthy until the version is in production, then the canary answers 50 % errors."""

    def __init__(self, promoted: Callable[[], bool]) -> None:
        super().__init__()
        self.promoted = promoted

    def read_window(self, state, *, window_s: float):
        self.errors = 50 if self.promoted() else 0
        return super().read_window(state, window_s=window_s)


def test_a_router_error_after_the_promotion_resumes_to_succeeded_never_to_progressing(registry):
    """The issue's reproduction: the final weight change fails after registry.promote."""
    metrics = SpikeAfterPromotion(lambda: registry.production_version("metarec") == 2)
    rollout = Rollout(registry, Faults({"router.set_weights": {3, 4}}), metrics=metrics)
    seen = []
    for _ in range(6):
        rollout.controller.reconcile_all()
        rollout.clock.tick()
        seen.append(rollout.store.get(rollout.state.id))
    phases = [state.phase for state in seen]
    after = phases[phases.index(Phase.PROMOTING) :]
    assert after[:2] == [Phase.PROMOTING, Phase.PROMOTING]  # two failed weight changes
    assert Phase.PROGRESSING not in after and after[-1] is Phase.SUCCEEDED
    # Meanwhile the rollout said why it was stuck.
    assert "injected fault at router.set_weights" in seen[phases.index(Phase.PROMOTING)].message
    rollout.assert_consistent(Phase.SUCCEEDED)


def test_an_abort_requested_after_the_promotion_cannot_undo_it(registry):
    rollout = Rollout(registry, Faults({"router.set_weights": {3}}))
    for _ in range(3):
        rollout.controller.reconcile_all()
        rollout.clock.tick()
    assert rollout.store.get(rollout.state.id).phase is Phase.PROMOTING
    rollout.store.request_abort("metarec")
    rollout.drive()
    rollout.assert_consistent(Phase.SUCCEEDED)


class OvertakenRouter(MemoryRouter):
    """Another controller ends the rollout while this one changes weights, then this fails."""

    def __init__(self, store: RolloutStore) -> None:
        super().__init__()
        self.store = store
        self.overtake = False

    def set_weights(self, *, production: int, canary: int) -> None:
        if self.overtake:
            self.overtake = False
            [state] = self.store.active("metarec")
            ended = state.model_copy(
                update={"phase": Phase.ABORTED, "canary_weight": 0, "message": "other"}
            )
            self.store.save(ended)
            raise RouterError("injected: weights overtaken.", fix="none: a test fault.")
        super().set_weights(production=production, canary=canary)


def test_the_error_path_never_overwrites_a_newer_phase(registry):
    store = RolloutStore(engine=registry.engine)
    router = OvertakenRouter(store)
    controller = RolloutController(
        registry=registry, store=store, router=router, metrics=ScriptedMetrics(), clock=Clock()
    )
    state = start_rollout(registry=registry, store=store, ref=V2, spec=SPEC, actor="t")
    controller.reconcile_all()  # Progressing at 50 %
    router.overtake = True
    controller.clock.tick()
    [after] = controller.reconcile_all()  # advancing: overtaken, then the router fails
    stored = store.get(state.id)
    assert stored.phase is Phase.ABORTED and stored.message == "other"
    assert after.phase is Phase.ABORTED and stored.canary_weight == 0


def test_a_stale_save_is_refused_and_changes_nothing(registry):
    store = RolloutStore(engine=registry.engine)
    state = start_rollout(registry=registry, store=store, ref=V2, spec=SPEC, actor="t")
    first = store.save(state.model_copy(update={"message": "first"}))
    assert first.revision == state.revision + 1
    with pytest.raises(RolloutStaleStateError, match=r"changed since it was read.*refused"):
        store.save(state.model_copy(update={"phase": Phase.FAILED, "message": "stale"}))
    stored = store.get(state.id)
    assert (stored.phase, stored.message, stored.revision) == (
        Phase.INITIALIZING,
        "first",
        first.revision,
    )

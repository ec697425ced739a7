"""The rollout controller: idempotent reconcile steps driven by :func:`decide`.

Every step reads the persisted state, acts (router, registry), then writes the new state; a
step interrupted half-way is safe to run again. A restarted controller re-asserts the weights
of the persisted step, starts a fresh analysis window and carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from metarec.clock import utc_now
from metarec.errors import MetaRecError, RegistryConflictError, RolloutError
from metarec.registry import Registry, Stage, VersionRef
from metarec.rollout.analysis import decide
from metarec.rollout.metrics import MetricSource
from metarec.rollout.routers.base import Router
from metarec.rollout.store import EventRecord, RolloutStore
from metarec.rollout.types import (
    Action,
    Decision,
    EventKind,
    Phase,
    RolloutSpec,
    RolloutState,
    Verdict,
    VerdictStatus,
    VerdictWindow,
    WindowMetrics,
)

log = logging.getLogger(__name__)


def start_rollout(
    *,
    registry: Registry,
    store: RolloutStore,
    ref: VersionRef,
    spec: RolloutSpec,
    actor: str,
) -> RolloutState:
    """Create a rollout of a staging version (the controller carries it out).

    Raises:
        VersionNotFoundError: No such version.
        RolloutError: The version is not in staging.
        RolloutConflictError: Another rollout of the model is active.
    """
    info = registry.get_version(ref)
    if info.stage is not Stage.STAGING:
        raise RolloutError(
            f"{ref.tag} is in {info.stage.value}; only a staging version can be rolled out.",
            fix="register a new version (`metarec models register`) or pick a staging one "
            "(`metarec models list`).",
        )
    return store.create(
        model=ref.model,
        version=ref.version,
        production_version=registry.production_version(ref.model),
        spec=spec,
        actor=actor,
    )


class RolloutController:
    """Carries rollouts through their phases: weights, analysis, promotion or rollback."""

    def __init__(
        self,
        *,
        registry: Registry,
        store: RolloutStore,
        router: Router,
        metrics: MetricSource,
        actor: str = "rollout-controller",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """Wire the controller to its collaborators (interfaces, never concrete services).

        Args:
            registry: Promotes the version when every step passed.
            store: Persisted rollout state.
            router: Moves traffic between production and canary.
            metrics: Reads the analysis windows.
            actor: Who the registry ledger names for promotions.
            clock: Wall clock (UTC); tests pass their own.
        """
        self.registry = registry
        self.store = store
        self.router = router
        self.metrics = metrics
        self.actor = actor
        self.clock = clock
        # Rollouts whose weights and window this process has (re-)established.
        self._attached: set[str] = set()

    # ---------------------------------------------------------------- loop
    def reconcile_all(self, model: str | None = None) -> list[RolloutState]:
        """Run one reconcile step on every active rollout (of ``model`` when given)."""
        states = []
        for state in self.store.active(model):
            try:
                states.append(self.reconcile(state.id))
            except MetaRecError as exc:  # a flaky router or metric source: retry next tick
                log.warning("rollout %s: %s", state.id, exc)
                self.store.save(state.model_copy(update={"message": str(exc)}))
        return states

    def run(self, *, stop: threading.Event, poll_s: float = 1.0, model: str | None = None) -> None:
        """Reconcile every ``poll_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            self.reconcile_all(model)
            stop.wait(poll_s)

    def run_until_done(
        self, rollout_id: str, *, poll_s: float = 1.0, timeout_s: float | None = None
    ) -> RolloutState:
        """Reconcile one rollout until it reaches a terminal phase (or ``timeout_s`` passes)."""
        stop = threading.Event()
        started = self.clock()
        while True:
            try:
                state = self.reconcile(rollout_id)
            except MetaRecError as exc:
                log.warning("rollout %s: %s", rollout_id, exc)
                state = self.store.get(rollout_id)
            if state.phase.terminal:
                return state
            if timeout_s is not None and (self.clock() - started).total_seconds() > timeout_s:
                return state
            stop.wait(poll_s)

    # ---------------------------------------------------------------- steps
    def reconcile(self, rollout_id: str) -> RolloutState:
        """One idempotent step of a rollout; returns the state after it."""
        state = self.store.get(rollout_id)
        if state.phase.terminal:
            self._attached.discard(state.id)
            return state
        if state.abort_requested:
            return self._abort(state)
        if state.phase is Phase.INITIALIZING:
            return self._initialize(state)
        if state.phase is Phase.PROGRESSING:
            return self._progress(state)
        if state.phase is Phase.PROMOTING:
            return self._promote(state)
        return self._end_failed(state)  # RollingBack: the checks failed

    def _set_weights(self, canary: int) -> None:
        self.router.set_weights(production=100 - canary, canary=canary)

    def _new_window(self, state: RolloutState) -> datetime:
        self.metrics.start_window(state)
        return self.clock()

    def _event(
        self,
        state: RolloutState,
        action: EventKind,
        message: str,
        decision: Decision | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        checks = None if decision is None else [c.model_dump(mode="json") for c in decision.checks]
        event = EventRecord(
            action,
            100 - state.canary_weight,
            state.canary_weight,
            metrics=metrics,
            checks=checks,
            message=message,
            at=self.clock(),
        )
        self.store.add_event(state, event)

    def _with_hit_rate_baseline(self, state: RolloutState) -> RolloutState:
        """``state`` with the production hit-rate baseline of its newest analysed window.

        The baseline has no column of its own: it is kept in each analysed event's metrics
        (``production_hit_rate``), so it survives a controller restart like the MAE baseline.
        """
        if state.spec.max_online_hit_rate_drop is None or state.production_hit_rate is not None:
            return state
        for event in reversed(self.store.events(state.id)):
            baseline = (event.metrics or {}).get("production_hit_rate")
            if baseline is not None:
                return state.model_copy(update={"production_hit_rate": baseline})
        return state

    def _initialize(self, state: RolloutState) -> RolloutState:
        info = self.registry.get_version(VersionRef(model=state.model, version=state.version))
        if info.stage is not Stage.STAGING:
            return self._fail(state, f"{info.tag} is {info.stage.value}, not staging")
        weight = state.spec.steps[0]
        self._set_weights(weight)
        state = state.model_copy(
            update={
                "phase": Phase.PROGRESSING,
                "step_index": 0,
                "canary_weight": weight,
                "window_started_at": self._new_window(state),
                "message": f"canary at {weight} %",
            }
        )
        self._attached.add(state.id)
        state = self.store.save(state)
        self._event(state, EventKind.START, f"canary {state.model}:v{state.version} at {weight} %")
        return state

    def _progress(self, state: RolloutState) -> RolloutState:
        if state.id not in self._attached:
            return self._attach(state)
        started = state.window_started_at or self.clock()
        window_s = (self.clock() - started).total_seconds()
        metrics = self.metrics.read_window(state, window_s=window_s)
        state = self._with_hit_rate_baseline(state)
        decision = decide(state, metrics)
        if decision.action is Action.WAIT:
            return self._wait(state, decision, metrics, window_s)
        snapshot = _snapshot(metrics, decision)
        update: dict[str, Any] = {
            "failed_checks": decision.failed_checks,
            "production_mae": decision.production_mae,
            "message": decision.reason,
        }
        if decision.action is Action.RETRY:
            update["window_started_at"] = self._new_window(state)
            state = self.store.save(state.model_copy(update=update))
            self._event(state, EventKind.RETRY, decision.reason, decision, snapshot)
            return state
        if decision.action is Action.FAIL:
            self._event(state, EventKind.CHECKS_FAILED, decision.reason, decision, snapshot)
            state = self._decided(state, update, Phase.ROLLING_BACK, VerdictStatus.FAILED, decision)
            return self._end_failed(state)
        self._event(state, EventKind.PASSED, decision.reason, decision, snapshot)
        if decision.action is Action.ADVANCE:
            return self._advance(state, update)
        # PROMOTE
        state = self._decided(state, update, Phase.PROMOTING, VerdictStatus.PASSED, decision)
        return self._promote(state)

    def _attach(self, state: RolloutState) -> RolloutState:
        """First step in this process (e.g. after a restart): re-assert weights, open a window."""
        self._set_weights(state.canary_weight)
        state = self.store.save(
            state.model_copy(
                update={
                    "window_started_at": self._new_window(state),
                    "message": f"resumed at {state.canary_weight} %",
                }
            )
        )
        self._attached.add(state.id)
        self._event(state, EventKind.RESUME, f"controller resumed at {state.canary_weight} %")
        return state

    def _wait(
        self, state: RolloutState, decision: Decision, metrics: WindowMetrics, window_s: float
    ) -> RolloutState:
        """No verdict yet: keep the window (aligned when the source restarted it)."""
        if metrics.window_s == 0.0 and state.window_started_at is not None and window_s > 0:
            # The source started a new window itself (no baseline): align the clock.
            state = state.model_copy(update={"window_started_at": self.clock()})
        if decision.reason != state.message or metrics.window_s == 0.0:
            state = self.store.save(state.model_copy(update={"message": decision.reason}))
        return state

    def _advance(self, state: RolloutState, update: dict[str, Any]) -> RolloutState:
        """Checks passed: set the next step's weights and open its window."""
        weight = state.spec.steps[state.step_index + 1]
        self._set_weights(weight)
        message = f"canary at {weight} %"
        update |= {"step_index": state.step_index + 1, "canary_weight": weight, "message": message}
        state = state.model_copy(update={**update, "window_started_at": self._new_window(state)})
        event = EventRecord(
            EventKind.ADVANCE, 100 - weight, weight, message=message, at=self.clock()
        )
        return self.store.save(state, event=event)  # the state and its event: one transaction

    def _decided(
        self,
        state: RolloutState,
        update: dict[str, Any],
        phase: Phase,
        status: VerdictStatus,
        decision: Decision,
    ) -> RolloutState:
        """Enter ``phase`` and keep the verdict the analysis reached."""
        state = state.model_copy(update={**update, "phase": phase})
        verdict = self._verdict(state, status, decision)
        return self.store.save(state.model_copy(update={"verdict": verdict}))

    def _promote(self, state: RolloutState) -> RolloutState:
        ref = VersionRef(model=state.model, version=state.version)
        verdict = state.verdict or self._verdict(state, VerdictStatus.PASSED, None)
        if self.registry.get_version(ref).stage is not Stage.PRODUCTION:  # idempotent
            try:
                self.registry.promote(
                    ref,
                    actor=self.actor,
                    reason=f"canary rollout {state.id} passed every step "
                    f"({', '.join(f'{s} %' for s in state.spec.steps)})",
                    evidence={"canary_verdict": verdict.model_dump(mode="json")},
                    expected_production=state.production_version,
                )
            except RegistryConflictError as exc:
                return self._fail(state, f"production changed during the rollout: {exc.problem}")
        # The canary now serves the production version: it keeps all traffic until the
        # production service is redeployed on it.
        return self._finish(
            state,
            Phase.SUCCEEDED,
            canary=100,
            status=VerdictStatus.PASSED,
            reason=f"{ref.tag} promoted to production",
        )

    def _end_failed(self, state: RolloutState) -> RolloutState:
        """The checks failed (phase ``RollingBack``): canary weight 0, phase ``Failed``."""
        return self._fail(state, state.message or "rolled back")

    def _fail(self, state: RolloutState, reason: str) -> RolloutState:
        """End in ``Failed`` with the canary at weight 0 (the version stays in staging)."""
        return self._finish(
            state, Phase.FAILED, canary=0, status=VerdictStatus.FAILED, reason=reason
        )

    def _abort(self, state: RolloutState) -> RolloutState:
        return self._finish(
            state,
            Phase.ABORTED,
            canary=0,
            status=VerdictStatus.ABORTED,
            reason="aborted by an operator",
        )

    def _finish(
        self,
        state: RolloutState,
        phase: Phase,
        *,
        canary: int,
        status: VerdictStatus,
        reason: str,
    ) -> RolloutState:
        self._set_weights(canary)
        verdict = state.verdict or self._verdict(state, status, None, reason=reason)
        if phase is not Phase.SUCCEEDED:
            verdict = verdict.model_copy(update={"status": status})
        state = self.store.save(
            state.model_copy(
                update={
                    "phase": phase,
                    "canary_weight": canary,
                    "verdict": verdict,
                    "message": reason,
                }
            )
        )
        self._attached.discard(state.id)
        self._event(state, EventKind.ended(phase), reason)
        return state

    def _verdict(
        self,
        state: RolloutState,
        status: VerdictStatus,
        decision: Decision | None,
        *,
        reason: str | None = None,
    ) -> Verdict:
        windows = [
            VerdictWindow(
                at=event.at,
                step=event.step_index,
                canary_weight=event.canary_weight,
                result=event.action,
                checks=event.checks,
                metrics=event.metrics,
            )
            for event in self.store.events(state.id)
            if event.checks is not None
        ]
        return Verdict(
            rollout_id=state.id,
            status=status,
            model=state.model,
            version=state.version,
            production_version=state.production_version,
            reason=reason or (decision.reason if decision else state.message),
            spec=state.spec,
            final_checks=[] if decision is None else decision.checks,
            windows=windows,
            decided_at=self.clock(),
        )


def _snapshot(metrics: WindowMetrics, decision: Decision) -> dict[str, Any]:
    """What an analysed event stores: both windows with their ratios, and the baseline used."""
    snapshot = metrics.model_dump(mode="json")
    for side, window in (("canary", metrics.canary), ("production", metrics.production)):
        snapshot[side]["error_rate"] = window.error_rate
        snapshot[side]["online_mae"] = window.online_mae
        snapshot[side]["online_hit_rate"] = window.online_hit_rate
    # The hit-rate baseline the analysis used (restored from here after a restart).
    snapshot["production_hit_rate"] = decision.production_hit_rate
    return snapshot


def wait_for_rollout(
    store: RolloutStore,
    rollout_id: str,
    *,
    timeout_s: float,
    poll_s: float = 5.0,
) -> RolloutState:
    """Watch a rollout that a controller elsewhere carries out, until it ends or time is up.

    Returns:
        The last state read (terminal unless the timeout passed).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        state = store.get(rollout_id)
        if state.phase.terminal or time.monotonic() > deadline:
            return state
        time.sleep(poll_s)

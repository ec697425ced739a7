"""The rollout controller: idempotent reconcile steps driven by :func:`decide`.

Every step reads the persisted state, acts (router, metrics, registry), then writes its outcome
and its timeline events in one compare-and-set save (a stale save is refused, never written
over a newer state); a decision to promote is saved (``Promoting``) before the registry is
touched. A step that fails half-way leaves the last state saved and is safe to run again: the
next tick re-asserts the persisted weights, starts a fresh analysis window and carries on.
Once the version is in production (``registry.promote`` committed) the only way on is
``Succeeded``: a later router or store failure is retried, never rolled back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from metarec.clock import utc_now
from metarec.errors import (
    MetaRecError,
    RegistryConflictError,
    RolloutNotFoundError,
    RolloutStaleStateError,
)
from metarec.registry import Registry, Stage, VersionRef
from metarec.rollout.analysis import decide
from metarec.rollout.metrics import MetricSource
from metarec.rollout.routers.base import Router
from metarec.rollout.starting import start_rollout, wait_for_rollout
from metarec.rollout.store import EventRecord, RolloutStore
from metarec.rollout.types import (
    Action,
    Decision,
    EventKind,
    Phase,
    RolloutState,
    Verdict,
    VerdictStatus,
    WindowMetrics,
)
from metarec.rollout.verdicts import (
    build_verdict,
    snapshot,
    verdict_windows,
    with_hit_rate_baseline,
)

log = logging.getLogger(__name__)

__all__ = ["RolloutController", "start_rollout", "wait_for_rollout"]  # the last two: re-exported


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
        on_end: Callable[[RolloutState], None] | None = None,
    ) -> None:
        """Wire the controller to its collaborators (interfaces, never concrete services).

        Args:
            registry: Promotes the version when every step passed.
            store: Persisted rollout state.
            router: Moves traffic between production and canary.
            metrics: Reads the analysis windows.
            actor: Who the registry ledger names for promotions.
            clock: Wall clock (UTC); tests pass their own.
            on_end: Called with the final state once a rollout's end (promoted, rolled back,
                aborted) is saved: reports, notifications. Its errors are logged, never raised.
        """
        self.registry = registry
        self.store = store
        self.router = router
        self.metrics = metrics
        self.actor = actor
        self.clock = clock
        self.on_end = on_end
        # Rollouts whose router weights and metric window this process has (re-)established
        # and saved. A step that touches either drops its rollout until its save succeeded,
        # so after a failed step the next one re-asserts the persisted weights.
        self._attached: set[str] = set()

    # ---------------------------------------------------------------- loop
    def reconcile_all(self, model: str | None = None) -> list[RolloutState]:
        """Run one reconcile step on every active rollout (of ``model`` when given).

        A failed step (router, registry, metrics or store) leaves the last state saved; its
        error becomes the message of the rollout's state as it is now (re-read, saved with
        compare-and-set, so a newer phase is never overwritten) and the next tick carries on
        from the persisted phase.

        Returns:
            Every active rollout's state after its step (as last read when the step failed).
        """
        try:
            active = self.store.active(model)
        except MetaRecError as exc:  # the store is unreachable: nothing to do this tick
            log.warning("cannot list the active rollouts: %s", exc)
            return []
        states = []
        for state in active:
            try:
                states.append(self._step(state.id) or state)
            except RolloutNotFoundError as exc:  # deleted meanwhile
                log.warning("rollout %s: %s", state.id, exc)
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
        state: RolloutState | None = None
        while True:
            state = self._step(rollout_id) or state
            if state is not None and state.phase.terminal:
                return state
            if timeout_s is not None and (self.clock() - started).total_seconds() > timeout_s:
                return state or self.store.get(rollout_id)
            stop.wait(poll_s)

    def _step(self, rollout_id: str) -> RolloutState | None:
        """:meth:`reconcile`, a failure recorded instead of raised (None: the store failed too)."""
        try:
            return self.reconcile(rollout_id)
        except RolloutNotFoundError:
            raise
        except MetaRecError as exc:  # a flaky router, registry, metric source or store
            log.warning("rollout %s: %s", rollout_id, exc)
            try:
                current = self.store.get(rollout_id)
                stale = isinstance(exc, RolloutStaleStateError)  # changed by another writer
                if stale or current.phase.terminal or current.message == str(exc):
                    return current
                return self.store.save(current.model_copy(update={"message": str(exc)}))
            except RolloutNotFoundError:
                raise
            except MetaRecError as again:  # the store is down, or the rollout just changed
                log.warning("rollout %s: the error was not recorded: %s", rollout_id, again)
                return None

    # ---------------------------------------------------------------- steps
    def reconcile(self, rollout_id: str) -> RolloutState:
        """One idempotent step of a rollout; returns the state after it.

        Raises:
            MetaRecError: The step failed; the state it left is consistent and the step can
                run again.
        """
        state = self.store.get(rollout_id)
        if state.phase.terminal:
            self._attached.discard(state.id)
            return state
        if self.registry.production_version(state.model) == state.version:
            return self._promote(state)  # in production already: Succeeded is the only way on
        if state.abort_requested:
            return self._abort(state)
        if state.phase is Phase.INITIALIZING:
            return self._initialize(state)
        if state.phase is Phase.PROGRESSING:
            return self._progress(state)
        if state.phase is Phase.PROMOTING:
            return self._promote(state)
        return self._end_failed(state)  # RollingBack: the checks failed

    def _set_weights(self, state: RolloutState, canary: int) -> None:
        self._attached.discard(state.id)  # until the step's save: re-assert on the next one
        self.router.set_weights(production=100 - canary, canary=canary)

    def _new_window(self, state: RolloutState) -> datetime:
        self._attached.discard(state.id)
        self.metrics.start_window(state)
        return self.clock()

    def _saved(self, state: RolloutState, *events: EventRecord) -> RolloutState:
        """Save ``state`` and ``events`` (compare-and-set); the rollout is attached again."""
        state = self.store.save(state, events=events)
        self._attached.add(state.id)
        return state

    def _record(
        self,
        state: RolloutState,
        action: EventKind,
        message: str,
        decision: Decision | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> EventRecord:
        """A timeline entry at ``state``'s phase, step and weights (saved with a state)."""
        checks = None if decision is None else [c.model_dump(mode="json") for c in decision.checks]
        return EventRecord(
            action,
            100 - state.canary_weight,
            state.canary_weight,
            metrics=metrics,
            checks=checks,
            message=message,
            at=self.clock(),
            phase=state.phase,
            step_index=state.step_index,
        )

    def _with_hit_rate_baseline(self, state: RolloutState) -> RolloutState:
        """``state`` with the production hit-rate baseline kept in its analysed events."""
        if state.spec.max_online_hit_rate_drop is None or state.production_hit_rate is not None:
            return state
        return with_hit_rate_baseline(state, self.store.events(state.id))

    def _initialize(self, state: RolloutState) -> RolloutState:
        info = self.registry.get_version(VersionRef(model=state.model, version=state.version))
        if info.stage is not Stage.STAGING:
            return self._fail(state, f"{info.tag} is {info.stage.value}, not staging")
        weight = state.spec.steps[0]
        self._set_weights(state, weight)
        state = state.model_copy(
            update={
                "phase": Phase.PROGRESSING,
                "step_index": 0,
                "canary_weight": weight,
                "window_started_at": self._new_window(state),
                "message": f"canary at {weight} %",
            }
        )
        message = f"canary {state.model}:v{state.version} at {weight} %"
        return self._saved(state, self._record(state, EventKind.START, message))

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
        stored = snapshot(metrics, decision)
        update: dict[str, Any] = {
            "failed_checks": decision.failed_checks,
            "production_mae": decision.production_mae,
            "message": decision.reason,
        }
        if decision.action is Action.RETRY:
            event = self._record(state, EventKind.RETRY, decision.reason, decision, stored)
            update["window_started_at"] = self._new_window(state)
            return self._saved(state.model_copy(update=update), event)
        if decision.action is Action.FAIL:
            event = self._record(state, EventKind.CHECKS_FAILED, decision.reason, decision, stored)
            state = self._decided(state, update, Phase.ROLLING_BACK, decision, event)
            return self._end_failed(state)
        passed = self._record(state, EventKind.PASSED, decision.reason, decision, stored)
        if decision.action is Action.ADVANCE:
            return self._advance(state, update, passed)
        # PROMOTE: the decision is saved (phase Promoting) before the registry is touched.
        state = self._decided(state, update, Phase.PROMOTING, decision, passed)
        return self._promote(state)

    def _attach(self, state: RolloutState) -> RolloutState:
        """First step in this process, or after a failed one: re-assert weights, new window."""
        self._set_weights(state, state.canary_weight)
        state = state.model_copy(
            update={
                "window_started_at": self._new_window(state),
                "message": f"resumed at {state.canary_weight} %",
            }
        )
        message = f"controller resumed at {state.canary_weight} %"
        return self._saved(state, self._record(state, EventKind.RESUME, message))

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

    def _advance(
        self, state: RolloutState, update: dict[str, Any], passed: EventRecord
    ) -> RolloutState:
        """Checks passed: set the next step's weights and open its window."""
        weight = state.spec.steps[state.step_index + 1]
        self._set_weights(state, weight)
        message = f"canary at {weight} %"
        update |= {"step_index": state.step_index + 1, "canary_weight": weight, "message": message}
        state = state.model_copy(update={**update, "window_started_at": self._new_window(state)})
        # The window's verdict, the new step and its event: one transaction.
        return self._saved(state, passed, self._record(state, EventKind.ADVANCE, message))

    def _decided(
        self,
        state: RolloutState,
        update: dict[str, Any],
        phase: Phase,
        decision: Decision,
        event: EventRecord,
    ) -> RolloutState:
        """Enter ``phase`` with the verdict the analysis reached (saved with its ``event``)."""
        state = state.model_copy(update={**update, "phase": phase})
        status = VerdictStatus.FAILED if phase is Phase.ROLLING_BACK else VerdictStatus.PASSED
        verdict = self._verdict(state, status, decision, pending=event)
        return self.store.save(state.model_copy(update={"verdict": verdict}), events=[event])

    def _promote(self, state: RolloutState) -> RolloutState:
        """Promote unless done already, then end ``Succeeded`` with the canary at 100 %.

        Idempotent: the registry is asked first, so a step that failed after the promotion
        committed (router, store) resumes here and never promotes twice.
        """
        ref = VersionRef(model=state.model, version=state.version)
        info = self.registry.get_version(ref)
        reason = f"{ref.tag} promoted to production"
        if info.stage is Stage.STAGING:
            try:
                self._promote_in_registry(state, ref)
            except RegistryConflictError as exc:
                production = self.registry.production_version(state.model)
                if production == state.production_version:
                    raise  # the registry was busy: the next tick promotes again
                if production != state.version:
                    return self._fail(state, f"production changed during the rollout: {exc}")
        elif info.stage is not Stage.PRODUCTION:
            return self._fail(state, f"{ref.tag} became {info.stage.value} during the rollout")
        elif state.phase is not Phase.PROMOTING:
            reason = f"{ref.tag} is in production (promoted outside this rollout)"
        # The canary now serves the production version: it keeps all traffic until the
        # production service is redeployed on it.
        return self._finish(
            state, Phase.SUCCEEDED, canary=100, status=VerdictStatus.PASSED, reason=reason
        )

    def _promote_in_registry(self, state: RolloutState, ref: VersionRef) -> None:
        verdict = state.verdict or self._verdict(state, VerdictStatus.PASSED)
        self.registry.promote(
            ref,
            actor=self.actor,
            reason=f"canary rollout {state.id} passed every step "
            f"({', '.join(f'{s} %' for s in state.spec.steps)})",
            evidence={"canary_verdict": verdict.model_dump(mode="json")},
            expected_production=state.production_version,
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
        """Set the final weights, then save the terminal phase with its verdict and event."""
        self._set_weights(state, canary)
        verdict = state.verdict or self._verdict(state, status, reason=reason)
        if phase is not Phase.SUCCEEDED:
            verdict = verdict.model_copy(update={"status": status})
        state = state.model_copy(
            update={"phase": phase, "canary_weight": canary, "verdict": verdict, "message": reason}
        )
        state = self.store.save(state, event=self._record(state, EventKind.ended(phase), reason))
        self._attached.discard(state.id)
        self._tell_end(state)
        return state

    def _tell_end(self, state: RolloutState) -> None:
        """Run ``on_end`` on a saved end; a failure there never undoes or repeats the end."""
        if self.on_end is None:
            return
        try:
            self.on_end(state)
        except Exception:  # reports and notifications must not stop the loop
            log.exception("rollout %s: the end-of-rollout hook failed", state.id)

    def _verdict(
        self,
        state: RolloutState,
        status: VerdictStatus,
        decision: Decision | None = None,
        *,
        reason: str | None = None,
        pending: EventRecord | None = None,
    ) -> Verdict:
        """The verdict of ``state``: its analysed windows (``pending`` last, if not yet saved)."""
        windows = verdict_windows([*self.store.events(state.id), *([pending] if pending else [])])
        return build_verdict(
            state,
            status=status,
            windows=windows,
            decided_at=self.clock(),
            final_checks=() if decision is None else decision.checks,
            reason=reason,
        )

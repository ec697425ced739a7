"""The pure analysis: ``decide(state, metrics) → Decision``. No I/O, no clock, no globals."""

from __future__ import annotations

from metarec.rollout.types import (
    DATA_CHECKS,
    Action,
    CheckResult,
    Decision,
    Phase,
    RolloutState,
    WindowMetrics,
)


def decide(state: RolloutState, metrics: WindowMetrics | None) -> Decision:
    """Decide what a rollout does next from its state and the current window's metrics.

    Rules (evaluated in order):

    1. An abort request wins in every non-terminal phase → ``ABORT``.
    2. Outside ``Progressing`` there is nothing to analyse → ``NONE``.
    3. Window shorter than ``spec.interval_s``, or no metrics → ``WAIT``.
    4. Fewer canary requests than ``spec.min_requests`` → ``WAIT`` (the window grows; no
       verdict on too little data) until the window is ``max_wait_intervals`` intervals
       long; then the window fails with the check ``canary_requests`` (missing data is a
       failed check, as in Flagger).
    5. Checks: canary error rate ≤ ``max_error_rate``; canary p99 ≤ ``max_p99_ms`` (when set);
       canary online MAE − production online MAE ≤ ``max_online_mae_delta`` (when set;
       production's MAE falls back to the last one measured when production had too little
       feedback in this window). The MAE check needs ``min_feedback`` canary events and a
       production MAE: without them the window waits — unless another check already failed
       (judged without MAE) or the window is overdue (fails with ``canary_feedback`` or
       ``production_feedback``).
    6. Any check failed → consecutive failures + 1; reaching ``failure_threshold`` →
       ``ROLLBACK``, else ``RETRY``. All passed → failures reset; ``PROMOTE`` on the last
       step, else ``ADVANCE``.

    Args:
        state: The rollout's persisted state (spec included).
        metrics: Production and canary over the current window (None: not read yet).

    Returns:
        The decision with every check and its numbers.
    """
    spec = state.spec
    if state.abort_requested and not state.phase.terminal:
        return Decision(action=Action.ABORT, failed_checks=state.failed_checks, reason="aborted")
    if state.phase is not Phase.PROGRESSING:
        return Decision(action=Action.NONE, failed_checks=state.failed_checks)
    if metrics is None or metrics.window_s < spec.interval_s:
        return _wait(state, "analysis window not over yet")
    canary, production = metrics.canary, metrics.production
    overdue = metrics.window_s >= spec.interval_s * spec.max_wait_intervals
    waited = f"after {metrics.window_s:.0f} s ({spec.max_wait_intervals} intervals)"
    production_mae = state.production_mae
    if production.online_mae is not None and production.feedback >= spec.min_feedback:
        production_mae = production.online_mae

    if canary.requests < spec.min_requests:
        if not overdue:
            return _wait(
                state,
                f"{canary.requests:.0f} canary requests in the window, "
                f"{spec.min_requests} needed for a verdict",
            )
        missing = CheckResult(
            name="canary_requests",
            value=canary.requests,
            threshold=spec.min_requests,
            passed=False,
            detail=f"only {canary.requests:.0f} canary requests {waited}, "
            f"{spec.min_requests} needed for a verdict",
        )
        return _judge(state, [missing], production_mae)

    checks = [
        CheckResult(
            name="error_rate",
            value=canary.error_rate,
            threshold=spec.max_error_rate,
            passed=(canary.error_rate or 0.0) <= spec.max_error_rate,
            detail=f"{canary.errors:.0f} errors / {canary.requests:.0f} canary requests",
        )
    ]
    if spec.max_p99_ms is not None:
        p99 = canary.p99_ms
        checks.append(
            CheckResult(
                name="latency_p99_ms",
                value=p99,
                threshold=spec.max_p99_ms,
                passed=p99 is not None and p99 <= spec.max_p99_ms,
                detail="canary latency p99" if p99 is not None else "no latency samples",
            )
        )
    if spec.max_online_mae_delta is not None:
        missing = None
        if canary.feedback < spec.min_feedback or canary.online_mae is None:
            missing = CheckResult(
                name="canary_feedback",
                value=canary.feedback,
                threshold=spec.min_feedback,
                passed=False,
                detail=f"{canary.feedback:.0f} canary feedback events in the window, "
                f"{spec.min_feedback} needed for the online-MAE verdict",
            )
        elif production_mae is None:
            missing = CheckResult(
                name="production_feedback",
                value=production.feedback,
                threshold=spec.min_feedback,
                passed=False,
                detail="no production online MAE measured yet (production needs "
                f"{spec.min_feedback} feedback events in a window)",
            )
        if missing is None:
            delta = canary.online_mae - production_mae
            checks.append(
                CheckResult(
                    name="online_mae_delta",
                    value=delta,
                    threshold=spec.max_online_mae_delta,
                    passed=delta <= spec.max_online_mae_delta,
                    detail=f"canary MAE {canary.online_mae:.4f} − production MAE "
                    f"{production_mae:.4f} ({canary.feedback:.0f} canary feedback events)",
                )
            )
        elif overdue:
            checks.append(missing.model_copy(update={"detail": f"{missing.detail}, {waited}"}))
        elif all(check.passed for check in checks):
            # Nothing failed yet and the MAE verdict lacks data: let the window grow.
            return _wait(state, missing.detail, production_mae=production_mae)
    return _judge(state, checks, production_mae)


def _judge(
    state: RolloutState, checks: list[CheckResult], production_mae: float | None
) -> Decision:
    """Count a failed window (``RETRY``/``ROLLBACK``) or a passed one (``ADVANCE``/``PROMOTE``)."""
    spec = state.spec
    failed = [check for check in checks if not check.passed]
    if failed:
        count = state.failed_checks + 1
        names = ", ".join(_failure(c) for c in failed)
        if count >= spec.failure_threshold:
            return Decision(
                action=Action.ROLLBACK,
                checks=checks,
                failed_checks=count,
                production_mae=production_mae,
                reason=f"{count} failed window(s) in a row (threshold "
                f"{spec.failure_threshold}): {names}",
            )
        return Decision(
            action=Action.RETRY,
            checks=checks,
            failed_checks=count,
            production_mae=production_mae,
            reason=f"failed window {count} of {spec.failure_threshold}: {names}",
        )
    action = Action.PROMOTE if state.last_step else Action.ADVANCE
    return Decision(
        action=action,
        checks=checks,
        failed_checks=0,
        production_mae=production_mae,
        reason=f"all checks passed at {state.current_step} % canary",
    )


def _wait(state: RolloutState, reason: str, *, production_mae: float | None = None) -> Decision:
    return Decision(
        action=Action.WAIT,
        failed_checks=state.failed_checks,
        production_mae=production_mae if production_mae is not None else state.production_mae,
        reason=reason,
    )


def _failure(check: CheckResult) -> str:
    relation = "<" if check.name in DATA_CHECKS else ">"
    return f"{check.name}={_fmt(check.value)} {relation} {_fmt(check.threshold)}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"

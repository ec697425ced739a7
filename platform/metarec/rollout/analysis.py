"""The pure analysis: ``decide(state, metrics) → Decision``. No I/O, no clock, no globals."""

from __future__ import annotations

from metarec.rollout.types import (
    DATA_CHECKS,
    MINIMUM_CHECKS,
    Action,
    CheckResult,
    Decision,
    Phase,
    RolloutState,
    ServiceWindow,
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
       canary online MAE − production online MAE ≤ ``max_online_mae_delta`` (when set);
       canary online hit rate − production online hit rate ≥ ``−max_online_hit_rate_drop``
       (when set). Production's MAE / hit rate fall back to the last one measured when
       production had too little feedback in this window. The MAE check needs
       ``min_feedback`` canary events, the hit-rate check ``min_positive_feedback`` canary
       positive events, and each a production value: without them the window waits —
       unless another check already failed (judged without them) or the window is overdue
       (fails with ``canary_feedback`` / ``production_feedback`` /
       ``canary_positive_feedback`` / ``production_positive_feedback``).
    6. Any check failed → consecutive failures + 1; reaching ``failure_threshold`` →
       ``FAIL``, else ``RETRY``. All passed → failures reset; ``PROMOTE`` on the last
       step, else ``ADVANCE``.

    The reason of every ``WAIT``, ``RETRY``, ``FAIL``, ``ADVANCE`` and ``PROMOTE`` ends with the
    spec's notes in parentheses (why a check is off, e.g. the online MAE of a version that
    learnt from implicit events), so the rollout's message and timeline say it.

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
        return _wait(state, "analysis window not over yet", _Baselines.of(state))
    canary = metrics.canary
    overdue = metrics.window_s >= spec.interval_s * spec.max_wait_intervals
    waited = f"after {metrics.window_s:.0f} s ({spec.max_wait_intervals} intervals)"
    baselines = _Baselines.measure(state, metrics)

    if canary.requests < spec.min_requests:
        return _short_of_requests(state, canary.requests, baselines, overdue=overdue, waited=waited)
    return _analyse(state, metrics, baselines, overdue=overdue, waited=waited)


def _short_of_requests(
    state: RolloutState, requests: float, baselines: _Baselines, *, overdue: bool, waited: str
) -> Decision:
    """Rule 4: too few canary requests: wait, or fail ``canary_requests`` once overdue."""
    spec = state.spec
    if not overdue:
        return _wait(
            state,
            f"{requests:.0f} canary requests in the window, "
            f"{spec.min_requests} needed for a verdict",
            _Baselines.of(state),
        )
    missing = _lacking(
        "canary_requests",
        requests,
        spec.min_requests,
        f"only {requests:.0f} canary requests {waited}, {spec.min_requests} needed for a verdict",
    )
    return _judge(state, [missing], baselines)


def _analyse(
    state: RolloutState,
    metrics: WindowMetrics,
    baselines: _Baselines,
    *,
    overdue: bool,
    waited: str,
) -> Decision:
    """Rules 5 and 6: every check; a quality check short of data waits unless overdue."""
    checks = _traffic_checks(state, metrics.canary)
    quality = [
        check
        for check in (
            _mae_check(state, metrics, baselines.mae),
            _hit_rate_check(state, metrics, baselines.hit_rate),
        )
        if check is not None
    ]
    missing = [check for check in quality if check.name in DATA_CHECKS]
    checks += [check for check in quality if check.name not in DATA_CHECKS]
    if missing:
        if overdue:
            checks += [
                check.model_copy(update={"detail": f"{check.detail}, {waited}"})
                for check in missing
            ]
        elif all(check.passed for check in checks):
            # Nothing failed yet and a quality verdict lacks data: let the window grow.
            return _wait(state, "; ".join(check.detail for check in missing), baselines)
    return _judge(state, checks, baselines)


class _Baselines:
    """Production's online MAE and hit rate the canary is compared with (None: none yet)."""

    __slots__ = ("hit_rate", "mae")

    def __init__(self, *, mae: float | None, hit_rate: float | None) -> None:
        self.mae = mae
        self.hit_rate = hit_rate

    @classmethod
    def of(cls, state: RolloutState) -> _Baselines:
        """The baselines kept in the state."""
        return cls(mae=state.production_mae, hit_rate=state.production_hit_rate)

    @classmethod
    def measure(cls, state: RolloutState, metrics: WindowMetrics) -> _Baselines:
        """This window's production values where it had enough feedback, else the state's."""
        spec, production = state.spec, metrics.production
        mae, hit_rate = state.production_mae, state.production_hit_rate
        if production.online_mae is not None and production.feedback >= spec.min_feedback:
            mae = production.online_mae
        if (
            production.online_hit_rate is not None
            and production.positive_feedback >= spec.min_positive_feedback
        ):
            hit_rate = production.online_hit_rate
        return cls(mae=mae, hit_rate=hit_rate)


def _traffic_checks(state: RolloutState, canary: ServiceWindow) -> list[CheckResult]:
    """The canary's error rate and (when set) latency p99 against their limits."""
    spec = state.spec
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
    return checks


def _mae_check(
    state: RolloutState, metrics: WindowMetrics, production_mae: float | None
) -> CheckResult | None:
    """``online_mae_delta``, or the data check it lacks (None: not configured)."""
    spec, canary = state.spec, metrics.canary
    if spec.max_online_mae_delta is None:
        return None
    if canary.feedback < spec.min_feedback or canary.online_mae is None:
        return _lacking(
            "canary_feedback",
            canary.feedback,
            spec.min_feedback,
            f"{canary.feedback:.0f} canary feedback events in the window, "
            f"{spec.min_feedback} needed for the online-MAE verdict",
        )
    if production_mae is None:
        return _lacking(
            "production_feedback",
            metrics.production.feedback,
            spec.min_feedback,
            "no production online MAE measured yet (production needs "
            f"{spec.min_feedback} feedback events in a window)",
        )
    delta = canary.online_mae - production_mae
    return CheckResult(
        name="online_mae_delta",
        value=delta,
        threshold=spec.max_online_mae_delta,
        passed=delta <= spec.max_online_mae_delta,
        detail=f"canary MAE {canary.online_mae:.4f} − production MAE "
        f"{production_mae:.4f} ({canary.feedback:.0f} canary feedback events)",
    )


def _hit_rate_check(
    state: RolloutState, metrics: WindowMetrics, production_hit_rate: float | None
) -> CheckResult | None:
    """``online_hit_rate`` (canary − production), or the data check it lacks (None: off).

    The threshold stored is ``−max_online_hit_rate_drop``: a minimum of the delta.
    """
    spec, canary = state.spec, metrics.canary
    if spec.max_online_hit_rate_drop is None:
        return None
    needed = spec.min_positive_feedback
    if canary.positive_feedback < needed or canary.online_hit_rate is None:
        return _lacking(
            "canary_positive_feedback",
            canary.positive_feedback,
            needed,
            f"{canary.positive_feedback:.0f} canary positive feedback events in the "
            f"window, {needed} needed for the online hit-rate verdict",
        )
    if production_hit_rate is None:
        return _lacking(
            "production_positive_feedback",
            metrics.production.positive_feedback,
            needed,
            "no production online hit rate measured yet (production needs "
            f"{needed} positive feedback events in a window)",
        )
    delta = canary.online_hit_rate - production_hit_rate
    floor = -spec.max_online_hit_rate_drop
    return CheckResult(
        name="online_hit_rate",
        value=delta,
        threshold=floor,
        passed=delta >= floor,
        detail=f"canary hit rate {canary.online_hit_rate:.4f} − production hit rate "
        f"{production_hit_rate:.4f} ({canary.positive_feedback:.0f} canary positive events)",
    )


def _judge(state: RolloutState, checks: list[CheckResult], baselines: _Baselines) -> Decision:
    """Count a failed window (``RETRY``/``FAIL``) or a passed one (``ADVANCE``/``PROMOTE``)."""
    spec = state.spec
    kept = {"production_mae": baselines.mae, "production_hit_rate": baselines.hit_rate}
    failed = [check for check in checks if not check.passed]
    if failed:
        count = state.failed_checks + 1
        names = ", ".join(_failure(c) for c in failed)
        if count >= spec.failure_threshold:
            return Decision(
                action=Action.FAIL,
                checks=checks,
                failed_checks=count,
                reason=_noted(
                    state,
                    f"{count} failed window(s) in a row (threshold "
                    f"{spec.failure_threshold}): {names}",
                ),
                **kept,
            )
        return Decision(
            action=Action.RETRY,
            checks=checks,
            failed_checks=count,
            reason=_noted(state, f"failed window {count} of {spec.failure_threshold}: {names}"),
            **kept,
        )
    action = Action.PROMOTE if state.last_step else Action.ADVANCE
    return Decision(
        action=action,
        checks=checks,
        failed_checks=0,
        reason=_noted(state, f"all checks passed at {state.current_step} % canary"),
        **kept,
    )


def _wait(state: RolloutState, reason: str, baselines: _Baselines) -> Decision:
    return Decision(
        action=Action.WAIT,
        failed_checks=state.failed_checks,
        production_mae=baselines.mae,
        production_hit_rate=baselines.hit_rate,
        reason=_noted(state, reason),
    )


def _noted(state: RolloutState, reason: str) -> str:
    """``reason`` followed by the spec's notes in parentheses (unchanged without notes)."""
    notes = state.spec.notes
    return f"{reason} ({'; '.join(notes)})" if notes else reason


def _lacking(name: str, value: float, needed: float, detail: str) -> CheckResult:
    """The failed data check ``name``: ``value`` is short of the ``needed`` minimum."""
    return CheckResult(name=name, value=value, threshold=needed, passed=False, detail=detail)


def _failure(check: CheckResult) -> str:
    relation = "<" if check.name in MINIMUM_CHECKS else ">"
    return f"{check.name}={_fmt(check.value)} {relation} {_fmt(check.threshold)}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"

"""The pure analysis function: every rule, with numbers."""

from __future__ import annotations

import pytest
from metarec.rollout import (
    Action,
    Phase,
    RolloutSpec,
    RolloutState,
    ServiceWindow,
    WindowMetrics,
    decide,
)
from pydantic import ValidationError

SPEC = RolloutSpec(
    steps=(10, 50, 100),
    interval_s=10,
    max_error_rate=0.01,
    max_p99_ms=200,
    max_online_mae_delta=0.1,
    failure_threshold=2,
    min_requests=50,
    min_feedback=20,
)


def state(**kwargs) -> RolloutState:
    values = {"id": "r1", "model": "metarec", "version": 2, "spec": SPEC}
    values.update(phase=Phase.PROGRESSING, **kwargs)
    return RolloutState(**values)


def window(
    *, requests=100, errors=0, p99=50.0, c_fb=40, c_mae=0.8, p_fb=40, p_mae=0.8, window_s=10
) -> WindowMetrics:
    return WindowMetrics(
        window_s=window_s,
        canary=ServiceWindow(
            requests=requests, errors=errors, p99_ms=p99, feedback=c_fb, abs_error_sum=c_fb * c_mae
        ),
        production=ServiceWindow(
            requests=900, errors=0, p99_ms=40, feedback=p_fb, abs_error_sum=p_fb * p_mae
        ),
    )


def test_healthy_window_advances_then_promotes_on_last_step():
    decision = decide(state(step_index=0), window())
    assert decision.action is Action.ADVANCE
    assert {c.name for c in decision.checks} == {"error_rate", "latency_p99_ms", "online_mae_delta"}
    assert all(c.passed for c in decision.checks)
    assert decide(state(step_index=2), window()).action is Action.PROMOTE


def test_short_window_or_too_few_requests_waits():
    assert decide(state(), window(window_s=9.9)).action is Action.WAIT
    assert decide(state(), None).action is Action.WAIT
    decision = decide(state(), window(requests=49, errors=49))
    assert decision.action is Action.WAIT
    assert "49 canary requests" in decision.reason and "50 needed" in decision.reason


def test_error_rate_fails_then_rolls_back_at_threshold():
    first = decide(state(), window(errors=20))
    assert first.action is Action.RETRY and first.failed_checks == 1
    check = next(c for c in first.checks if c.name == "error_rate")
    assert check.value == pytest.approx(0.2) and not check.passed
    second = decide(state(failed_checks=1), window(errors=20))
    assert second.action is Action.ROLLBACK and second.failed_checks == 2
    assert "error_rate=0.2 > 0.01" in second.reason


def test_a_passing_window_resets_consecutive_failures():
    decision = decide(state(failed_checks=1), window())
    assert decision.action is Action.ADVANCE and decision.failed_checks == 0


def test_latency_p99_over_limit_fails():
    decision = decide(state(failed_checks=1), window(p99=250))
    assert decision.action is Action.ROLLBACK
    assert [c.name for c in decision.checks if not c.passed] == ["latency_p99_ms"]


def test_online_mae_delta_fails_and_uses_the_production_baseline_when_needed():
    bad = decide(state(), window(c_mae=1.2, p_mae=0.8))
    assert bad.action is Action.RETRY
    mae = next(c for c in bad.checks if c.name == "online_mae_delta")
    assert mae.value == pytest.approx(0.4)
    # 100 % canary: production has no feedback; the last measured production MAE is used.
    at_full = decide(state(step_index=2, production_mae=0.8), window(c_mae=0.85, p_fb=0))
    assert at_full.action is Action.PROMOTE
    assert at_full.production_mae == pytest.approx(0.8)
    # Nothing measured yet and no baseline: no verdict.
    assert decide(state(), window(p_fb=0)).action is Action.WAIT
    # Too little canary feedback: no verdict either.
    assert decide(state(), window(c_fb=5)).action is Action.WAIT


def test_optional_checks_are_skipped_when_unset():
    spec = SPEC.model_copy(update={"max_p99_ms": None, "max_online_mae_delta": None})
    decision = decide(state(spec=spec), window(p99=10_000, c_fb=0, c_mae=9))
    assert decision.action is Action.ADVANCE
    assert [c.name for c in decision.checks] == ["error_rate"]


def test_abort_wins_and_terminal_phases_do_nothing():
    assert decide(state(abort_requested=True), window()).action is Action.ABORT
    succeeded = state().model_copy(update={"phase": Phase.SUCCEEDED})
    assert decide(succeeded, window()).action is Action.NONE
    initializing = state().model_copy(update={"phase": Phase.INITIALIZING})
    assert decide(initializing, window()).action is Action.NONE


def test_decide_is_pure():
    before = state()
    snapshot = before.model_dump()
    decide(before, window(errors=50))
    assert before.model_dump() == snapshot


@pytest.mark.parametrize("steps", [(), (0, 50), (50, 10), (10, 10), (10, 101)])
def test_invalid_steps_are_refused(steps):
    with pytest.raises(ValidationError):
        RolloutSpec(steps=steps)


def test_a_failed_traffic_check_does_not_wait_for_feedback():
    # 20 % errors and no canary feedback yet: the window fails on the error rate now.
    decision = decide(state(), window(errors=20, c_fb=0))
    assert decision.action is Action.RETRY
    assert [c.name for c in decision.checks if not c.passed] == ["error_rate"]
    assert "online_mae_delta" not in {c.name for c in decision.checks}


def test_too_few_requests_waits_at_most_max_wait_intervals_then_fails():
    assert SPEC.max_wait_intervals == 5  # the default
    # Four and a half intervals without enough traffic: still waiting.
    assert decide(state(), window(requests=3, window_s=45)).action is Action.WAIT
    # Five intervals: missing data is a failed check.
    first = decide(state(), window(requests=3, window_s=50))
    assert first.action is Action.RETRY and first.failed_checks == 1
    [check] = first.checks
    assert (check.name, check.value, check.threshold, check.passed) == (
        "canary_requests",
        3,
        50,
        False,
    )
    assert "canary_requests=3 < 50" in first.reason
    assert "only 3 canary requests after 50 s (5 intervals)" in check.detail
    second = decide(state(failed_checks=1), window(requests=3, window_s=50))
    assert second.action is Action.ROLLBACK and second.failed_checks == 2


def test_missing_feedback_fails_the_window_once_overdue():
    spec = SPEC.model_copy(update={"max_wait_intervals": 2})
    assert decide(state(spec=spec), window(c_fb=5, window_s=19)).action is Action.WAIT
    decision = decide(state(spec=spec), window(c_fb=5, window_s=20))
    assert decision.action is Action.RETRY
    failed = [c for c in decision.checks if not c.passed]
    assert [(c.name, c.value, c.threshold) for c in failed] == [("canary_feedback", 5, 20)]
    assert "canary_feedback=5 < 20" in decision.reason
    # No production MAE ever measured: that check fails instead.
    no_baseline = decide(state(spec=spec), window(p_fb=0, window_s=20))
    assert [c.name for c in no_baseline.checks if not c.passed] == ["production_feedback"]


def test_max_wait_intervals_is_at_least_one():
    with pytest.raises(ValidationError):
        RolloutSpec(max_wait_intervals=0)

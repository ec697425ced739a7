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
    assert second.action is Action.FAIL and second.failed_checks == 2
    assert "error_rate=0.2 > 0.01" in second.reason


def test_a_passing_window_resets_consecutive_failures():
    decision = decide(state(failed_checks=1), window())
    assert decision.action is Action.ADVANCE and decision.failed_checks == 0


def test_latency_p99_over_limit_fails():
    decision = decide(state(failed_checks=1), window(p99=250))
    assert decision.action is Action.FAIL
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
    assert second.action is Action.FAIL and second.failed_checks == 2


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


HIT_SPEC = SPEC.model_copy(
    update={
        "max_online_mae_delta": None,
        "max_online_hit_rate_drop": 0.05,
        "min_positive_feedback": 30,
    }
)


def hits(
    *, c_pos=40, c_rate=0.30, p_pos=40, p_rate=0.30, window_s=10, errors=0, requests=100
) -> WindowMetrics:
    """A window with positive feedback and hits on both sides (online MAE not checked)."""
    metrics = window(window_s=window_s, errors=errors, requests=requests)
    canary = metrics.canary.model_copy(update={"positive_feedback": c_pos, "hits": c_pos * c_rate})
    production = metrics.production.model_copy(
        update={"positive_feedback": p_pos, "hits": p_pos * p_rate}
    )
    return metrics.model_copy(update={"canary": canary, "production": production})


def test_online_hit_rate_passes_within_the_drop_and_fails_beyond_it():
    spec = HIT_SPEC
    fine = decide(state(spec=spec), hits(c_rate=0.26, p_rate=0.30))
    assert fine.action is Action.ADVANCE and fine.production_hit_rate == pytest.approx(0.30)
    check = next(c for c in fine.checks if c.name == "online_hit_rate")
    assert check.value == pytest.approx(-0.04) and check.threshold == pytest.approx(-0.05)
    assert check.passed and "canary hit rate 0.2600 − production hit rate 0.3000" in check.detail
    # A better canary passes whatever the margin.
    assert decide(state(spec=spec), hits(c_rate=0.9, p_rate=0.3)).action is Action.ADVANCE
    bad = decide(state(spec=spec), hits(c_rate=0.10, p_rate=0.30))
    assert bad.action is Action.RETRY
    assert [c.name for c in bad.checks if not c.passed] == ["online_hit_rate"]
    assert "online_hit_rate=-0.2 < -0.05" in bad.reason
    assert decide(state(spec=spec, failed_checks=1), hits(c_rate=0.1)).action is Action.FAIL


def test_online_hit_rate_uses_the_production_baseline_at_full_canary():
    # 100 % canary: production got no positive feedback; the last measured rate is the baseline.
    decision = decide(
        state(spec=HIT_SPEC, step_index=2, production_hit_rate=0.3), hits(c_rate=0.28, p_pos=0)
    )
    assert decision.action is Action.PROMOTE
    assert decision.production_hit_rate == pytest.approx(0.3)
    # Production with too few positives in the window does not replace the baseline.
    few = decide(
        state(spec=HIT_SPEC, production_hit_rate=0.3), hits(c_rate=0.28, p_pos=10, p_rate=0.9)
    )
    assert few.action is Action.ADVANCE and few.production_hit_rate == pytest.approx(0.3)


def test_online_hit_rate_waits_for_positive_feedback_then_fails_overdue():
    spec = HIT_SPEC.model_copy(update={"max_wait_intervals": 2})
    waiting = decide(state(spec=spec), hits(c_pos=29, window_s=19))
    assert waiting.action is Action.WAIT
    assert "29 canary positive feedback events" in waiting.reason and "30 needed" in waiting.reason
    overdue = decide(state(spec=spec), hits(c_pos=29, window_s=20))
    assert overdue.action is Action.RETRY
    failed = [(c.name, c.value, c.threshold) for c in overdue.checks if not c.passed]
    assert failed == [("canary_positive_feedback", 29, 30)]
    assert "canary_positive_feedback=29 < 30" in overdue.reason
    # No production hit rate ever measured: that data check fails instead.
    no_baseline = decide(state(spec=spec), hits(p_pos=0, window_s=20))
    assert [c.name for c in no_baseline.checks if not c.passed] == ["production_positive_feedback"]
    assert decide(state(spec=spec), hits(p_pos=0, window_s=10)).action is Action.WAIT


def test_a_failed_check_does_not_wait_for_positive_feedback():
    decision = decide(state(spec=HIT_SPEC), hits(errors=20, c_pos=0))
    assert decision.action is Action.RETRY
    assert [c.name for c in decision.checks] == ["error_rate", "latency_p99_ms"]


def test_both_quality_checks_wait_for_their_own_data():
    spec = HIT_SPEC.model_copy(update={"max_online_mae_delta": 0.1})
    # MAE has its feedback, the hit rate not yet: the window waits for the hit rate.
    decision = decide(state(spec=spec), hits(c_pos=3))
    assert decision.action is Action.WAIT and "positive feedback" in decision.reason
    # Both judged: a bad MAE fails the window even though the hit rate is fine.
    metrics = hits()
    worse = metrics.model_copy(
        update={"canary": metrics.canary.model_copy(update={"abs_error_sum": 40 * 1.2})}
    )
    judged = decide(state(spec=spec), worse)
    assert judged.action is Action.RETRY
    assert {c.name: c.passed for c in judged.checks}["online_hit_rate"] is True
    assert [c.name for c in judged.checks if not c.passed] == ["online_mae_delta"]


def test_the_hit_rate_drop_is_a_share():
    with pytest.raises(ValidationError):
        RolloutSpec(max_online_hit_rate_drop=-0.1)
    with pytest.raises(ValidationError):
        RolloutSpec(min_positive_feedback=0)
    assert RolloutSpec().max_online_hit_rate_drop is None  # off unless asked for


EVENT_NOTE = "online MAE off: metarec:v2 learnt from implicit events"
EVENT_SPEC = HIT_SPEC.model_copy(update={"notes": (EVENT_NOTE,)})


def unrated_hits(*, c_rate: float, p_rate: float = 0.30) -> WindowMetrics:
    """Positive events without ratings only: no feedback for the MAE, positives and hits."""
    metrics = hits(c_rate=c_rate, p_rate=p_rate)
    canary = metrics.canary.model_copy(update={"feedback": 0, "abs_error_sum": 0})
    production = metrics.production.model_copy(update={"feedback": 0, "abs_error_sum": 0})
    return metrics.model_copy(update={"canary": canary, "production": production})


def test_an_event_canary_is_promoted_on_the_hit_rate_alone_without_rated_feedback():
    decision = decide(state(spec=EVENT_SPEC, step_index=2), unrated_hits(c_rate=0.28))
    assert decision.action is Action.PROMOTE
    assert [c.name for c in decision.checks] == ["error_rate", "latency_p99_ms", "online_hit_rate"]
    assert decision.production_mae is None and decision.production_hit_rate == pytest.approx(0.3)
    # The reason says why the online MAE was not checked (the rollout's message, its timeline).
    assert decision.reason == f"all checks passed at 100 % canary ({EVENT_NOTE})"
    # The hit rate is the quality check: a canary that loses hits fails the window.
    worse = decide(state(spec=EVENT_SPEC, step_index=2), unrated_hits(c_rate=0.1))
    assert worse.action is Action.RETRY
    assert [c.name for c in worse.checks if not c.passed] == ["online_hit_rate"]
    assert worse.reason.endswith(f"({EVENT_NOTE})")


def test_a_spec_without_notes_keeps_its_reasons_as_they_are():
    decision = decide(state(spec=HIT_SPEC, step_index=2), unrated_hits(c_rate=0.28))
    assert decision.reason == "all checks passed at 100 % canary"
    assert RolloutSpec().notes == ()

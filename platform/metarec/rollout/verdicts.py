"""What a rollout keeps of its analysis: window snapshots, verdicts and the hit-rate baseline."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from metarec.rollout.store import EventRecord, RolloutEvent
from metarec.rollout.types import (
    CheckResult,
    Decision,
    RolloutState,
    Verdict,
    VerdictStatus,
    VerdictWindow,
    WindowMetrics,
)


def snapshot(metrics: WindowMetrics, decision: Decision) -> dict[str, Any]:
    """What an analysed event stores: both windows with their ratios, and the baseline used."""
    stored = metrics.model_dump(mode="json")
    for side, window in (("canary", metrics.canary), ("production", metrics.production)):
        stored[side]["error_rate"] = window.error_rate
        stored[side]["online_mae"] = window.online_mae
        stored[side]["online_hit_rate"] = window.online_hit_rate
    # The hit-rate baseline the analysis used (restored from here after a restart).
    stored["production_hit_rate"] = decision.production_hit_rate
    return stored


def with_hit_rate_baseline(state: RolloutState, events: Sequence[RolloutEvent]) -> RolloutState:
    """``state`` with the production hit-rate baseline of its newest analysed window.

    The baseline has no column of its own: it is kept in each analysed event's metrics
    (``production_hit_rate``), so it survives a controller restart like the MAE baseline.
    """
    for event in reversed(events):
        baseline = (event.metrics or {}).get("production_hit_rate")
        if baseline is not None:
            return state.model_copy(update={"production_hit_rate": baseline})
    return state


def verdict_windows(events: Iterable[RolloutEvent | EventRecord]) -> list[VerdictWindow]:
    """The analysed windows among ``events`` (stored ones, or records about to be saved)."""
    return [
        VerdictWindow.model_validate(
            {
                "at": event.at,
                "step": event.step_index,
                "canary_weight": event.canary_weight,
                "result": event.action,
                "checks": event.checks,
                "metrics": event.metrics,
            }
        )
        for event in events
        if event.checks is not None
    ]


def build_verdict(
    state: RolloutState,
    *,
    status: VerdictStatus,
    windows: Sequence[VerdictWindow],
    decided_at: datetime,
    final_checks: Sequence[CheckResult] = (),
    reason: str | None = None,
) -> Verdict:
    """The verdict of ``state``: its analysed ``windows`` and the checks that decided."""
    return Verdict(
        rollout_id=state.id,
        status=status,
        model=state.model,
        version=state.version,
        production_version=state.production_version,
        reason=reason or state.message,
        spec=state.spec,
        final_checks=list(final_checks),
        windows=list(windows),
        decided_at=decided_at,
    )

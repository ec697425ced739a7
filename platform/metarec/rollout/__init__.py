"""Canary rollout: shift traffic step by step, analyse, then promote or roll back.

Shaped like Flagger / Argo Rollouts: a :class:`Phase` enum, a pure :func:`decide`, idempotent
reconcile steps in :class:`RolloutController`, small :class:`Router` and :class:`MetricSource`
interfaces with local and cluster implementations, and state persisted in the registry
database (:class:`RolloutStore`), so a restarted controller resumes where it stopped.
"""

from metarec.rollout.analysis import decide
from metarec.rollout.types import (
    Action,
    CheckResult,
    Decision,
    Phase,
    RolloutSpec,
    RolloutState,
    ServiceWindow,
    WindowMetrics,
)

__all__ = [
    "Action",
    "CheckResult",
    "Decision",
    "Phase",
    "RolloutSpec",
    "RolloutState",
    "ServiceWindow",
    "WindowMetrics",
    "decide",
]

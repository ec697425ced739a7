"""Value types of a rollout: phase, event kind, spec, state, window metrics and verdict."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Phase(StrEnum):
    """Where a rollout is (Flagger / Argo Rollouts style)."""

    INITIALIZING = "Initializing"
    PROGRESSING = "Progressing"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    FAILED = "Failed"
    ABORTED = "Aborted"

    @property
    def terminal(self) -> bool:
        """True for Succeeded, Failed and Aborted: nothing more happens."""
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED)


ACTIVE_PHASES = tuple(phase for phase in Phase if not phase.terminal)


# What events (and verdict windows) stored for EventKind.CHECKS_FAILED before issue 17.
LEGACY_CHECKS_FAILED = "rollback"


class EventKind(StrEnum):
    """What one event of a rollout's timeline records (its ``action`` column)."""

    START = "start"  # the first step's weights are set
    RESUME = "resume"  # a (re)started controller re-asserted the persisted weights
    PASSED = "passed"  # an analysed window's checks passed
    RETRY = "retry"  # an analysed window failed, fewer times in a row than the threshold
    # An analysed window failed failure-threshold times in a row: the rollout fails (canary
    # weight 0, the version stays in staging). Stored as "rollback" before issue 17.
    CHECKS_FAILED = "checks_failed"
    ADVANCE = "advance"  # the next step's weights are set
    SUCCEEDED = "succeeded"  # terminal: promoted to production
    FAILED = "failed"  # terminal: canary weight 0 (checks failed or production changed)
    ABORTED = "aborted"  # terminal: an operator stopped it

    @classmethod
    def _missing_(cls, value: object) -> EventKind | None:
        """Read the value older rows stored for :attr:`CHECKS_FAILED` (``"rollback"``)."""
        return cls.CHECKS_FAILED if value == LEGACY_CHECKS_FAILED else None

    @classmethod
    def ended(cls, phase: Phase) -> EventKind:
        """The event that records the end of a rollout in the terminal ``phase``."""
        return cls(phase.value.lower())


class Action(StrEnum):
    """What :func:`metarec.rollout.decide` asks the controller to do."""

    NONE = "none"  # nothing to analyse in this phase
    WAIT = "wait"  # the window is not over, or has too few requests for a verdict
    RETRY = "retry"  # checks failed, but fewer times in a row than the failure threshold
    ADVANCE = "advance"  # checks passed: next traffic step
    PROMOTE = "promote"  # checks passed on the last step
    # Checks failed failure-threshold times in a row: canary weight 0, the version stays in
    # staging (not the registry's rollback, which re-promotes the previous production version).
    FAIL = "fail"
    ABORT = "abort"  # an operator asked to stop


class RolloutSpec(BaseModel):
    """Traffic steps and analysis thresholds of one rollout (immutable once started)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: tuple[int, ...] = Field(
        default=(10, 25, 50, 100), description="Canary weights in percent, increasing, ≤ 100."
    )
    interval_s: float = Field(default=30.0, gt=0, description="Analysis window per step.")
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Highest canary 5xx share per window."
    )
    max_p99_ms: float | None = Field(
        default=None, gt=0, description="Highest canary latency p99 (ms); None: not checked."
    )
    max_online_mae_delta: float | None = Field(
        default=None,
        description="Highest online MAE of the canary minus production's; None: not checked.",
    )
    max_online_hit_rate_drop: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Largest drop of the canary's online hit rate below production's "
        "(the check fails when canary − production < −this); None: not checked.",
    )
    failure_threshold: int = Field(
        default=2, ge=1, description="Consecutive failed windows that trigger a rollback."
    )
    min_requests: int = Field(
        default=20, ge=1, description="Canary requests a window needs before any verdict."
    )
    min_feedback: int = Field(
        default=20, ge=1, description="Feedback events per service before the MAE verdict."
    )
    min_positive_feedback: int = Field(
        default=20,
        ge=1,
        description="Positive feedback events (rating ≥ 4 or unrated, of users served a "
        "list) per service before the hit-rate verdict.",
    )
    max_wait_intervals: int = Field(
        default=5,
        ge=1,
        description="A window still short of min_requests / min_feedback / "
        "min_positive_feedback after this many "
        "intervals counts as a failed window (missing data is a failed check, as in Flagger).",
    )

    notes: tuple[str, ...] = Field(
        default=(),
        description="Why the checks differ from what was asked, set when the rollout is "
        "created (e.g. 'online MAE off: metarec:v3 learnt from implicit events'); shown with "
        "the rollout's status and its window verdicts.",
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("at least one step is needed, e.g. 10,25,50,100")
        if any(not 0 < step <= 100 for step in steps):
            raise ValueError(f"steps must be percentages in 1..100, got {list(steps)}")
        if list(steps) != sorted(set(steps)):
            raise ValueError(f"steps must strictly increase, got {list(steps)}")
        return steps


class ServiceWindow(BaseModel):
    """What one service (production or canary) did during an analysis window."""

    requests: float = 0.0
    errors: float = 0.0
    p99_ms: float | None = None
    feedback: float = 0.0
    abs_error_sum: float = 0.0
    positive_feedback: float = 0.0
    hits: float = 0.0

    @property
    def error_rate(self) -> float | None:
        """Share of 5xx answers (None without requests)."""
        return self.errors / self.requests if self.requests > 0 else None

    @property
    def online_mae(self) -> float | None:
        """Windowed online MAE = Δ abs-error sum / Δ feedback count (None without feedback)."""
        return self.abs_error_sum / self.feedback if self.feedback > 0 else None

    @property
    def online_hit_rate(self) -> float | None:
        """Windowed online hit rate = Δ hits / Δ positive feedback (None without positives)."""
        return self.hits / self.positive_feedback if self.positive_feedback > 0 else None


class WindowMetrics(BaseModel):
    """Both services over one analysis window."""

    window_s: float = Field(description="Seconds since the window started.")
    production: ServiceWindow = Field(default_factory=ServiceWindow)
    canary: ServiceWindow = Field(default_factory=ServiceWindow)


class RolloutState(BaseModel):
    """Persisted state of one rollout: what :func:`decide` and the controller read."""

    id: str
    model: str
    version: int
    production_version: int | None = None
    spec: RolloutSpec
    phase: Phase = Phase.INITIALIZING
    step_index: int = 0
    canary_weight: int = 0
    failed_checks: int = 0
    production_mae: float | None = Field(
        default=None,
        description="Last production online MAE measured (baseline when production gets no "
        "feedback, e.g. at a 100 % canary step).",
    )
    production_hit_rate: float | None = Field(
        default=None,
        description="Last production online hit rate measured (the baseline when production "
        "gets too little feedback). Not a column: the controller restores it from the "
        "rollout's events before each analysis.",
    )
    abort_requested: bool = False
    window_started_at: datetime | None = None
    verdict: Verdict | None = None
    message: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    revision: int = Field(
        default=0,
        ge=0,
        description="Compare-and-set version of the stored state: every save bumps it, and a "
        "save of a state read at an older revision is refused (never overwrites).",
    )

    @property
    def current_step(self) -> int:
        """Canary weight of the current step."""
        return self.spec.steps[min(self.step_index, len(self.spec.steps) - 1)]

    @property
    def last_step(self) -> bool:
        """True on the final traffic step."""
        return self.step_index >= len(self.spec.steps) - 1


# Checks that a window had enough data for a verdict: their threshold is a minimum.
DATA_CHECKS = frozenset(
    {
        "canary_requests",
        "canary_feedback",
        "production_feedback",
        "canary_positive_feedback",
        "production_positive_feedback",
    }
)
# Checks whose value must stay at or above the threshold (all others: at or below).
MINIMUM_CHECKS = DATA_CHECKS | {"online_hit_rate"}


class CheckResult(BaseModel):
    """One metric against its threshold in one window (a minimum for :data:`MINIMUM_CHECKS`)."""

    name: str
    value: float | None
    threshold: float
    passed: bool
    detail: str = ""


class Decision(BaseModel):
    """The outcome of :func:`decide`: an action, the checks behind it and why."""

    action: Action
    checks: list[CheckResult] = Field(default_factory=list)
    failed_checks: int = Field(default=0, description="Consecutive failed windows after this.")
    production_mae: float | None = None
    production_hit_rate: float | None = None
    reason: str = ""


class VerdictStatus(StrEnum):
    """How a rollout ended, as its verdict says."""

    PASSED = "passed"
    FAILED = "failed"
    ABORTED = "aborted"


class VerdictWindow(BaseModel):
    """One analysed window, as the verdict keeps it."""

    at: datetime
    step: int = Field(description="Index of the traffic step the window ran at.")
    canary_weight: int
    result: EventKind = Field(description="passed, retry or checks_failed.")
    checks: list[CheckResult] = Field(default_factory=list)
    metrics: dict[str, Any] | None = Field(
        default=None, description="Both services' window metrics, as the event stored them."
    )


class Verdict(BaseModel):
    """Why a rollout ended as it did: kept with the rollout and, on promotion, in the ledger."""

    model_config = ConfigDict(frozen=True)

    rollout_id: str
    status: VerdictStatus
    model: str
    version: int
    production_version: int | None = None
    reason: str = ""
    spec: RolloutSpec
    final_checks: list[CheckResult] = Field(
        default_factory=list, description="The checks of the window that decided (if any)."
    )
    windows: list[VerdictWindow] = Field(default_factory=list)
    decided_at: datetime

    def latest(self, side: str, metric: str) -> float | None:
        """The newest analysed window's value of ``metric`` for ``side`` (None: never measured).

        Args:
            side: ``production`` or ``canary``.
            metric: A window metric, e.g. ``online_mae``.
        """
        for window in reversed(self.windows):
            value = ((window.metrics or {}).get(side) or {}).get(metric)
            if value is not None:
                return float(value)
        return None


RolloutState.model_rebuild()  # its ``verdict`` field names Verdict, defined after it

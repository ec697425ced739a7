"""The gate's rule types: what each declares and what it means.

Each rule reads one table of the model card (``rating`` or ``ranking``) and applies to each
(scenario, cell) of it, or to their mean. A rule type knows the value it compares the candidate's
with (``reference``: nothing, a baseline of the same evaluation, or production) and how it judges
the pair (``judge``), so :func:`metarec.gate.checks.rule_checks` applies every rule through one
interface. The policy file that lists them is :mod:`metarec.gate.policy`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from metarec.gate.paired import paired_test

LOWER_IS_BETTER = ("mae", "rmse", "mse")
# Neither larger nor smaller is better: only absolute bounds may be put on these.
DIRECTIONLESS = {"popularity": "the mean popularity percentile of the recommended items"}
RANKING_CELL = re.compile(r"^(time|random)@[1-9][0-9]*$")
# Comparisons allow this much floating-point slack at their limit.
TOLERANCE = 1e-12

Table = Literal["rating", "ranking"]
RuleKind = Literal["absolute", "margin", "regression"]
# Per selected cell, {user: (candidate, production, weight)} (see :mod:`metarec.gate.paired`).
UserCells = Sequence[Mapping[Any, tuple[float, float, float]]]
NOT_PAIRED = (
    "mean difference only: no per-user values of both versions (pass the candidate's training "
    "set, `metarec gate --training-set`, to test the difference paired over users)"
)


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better (errors) or larger (rankings)."""
    return metric.lower() in LOWER_IS_BETTER


def has_direction(metric: str) -> bool:
    """Whether ``metric`` has a better direction (margins and regressions need one)."""
    return metric.lower() not in DIRECTIONLESS


def improvement(metric: str, value: float, reference: float) -> float:
    """How much better ``value`` is than ``reference`` (positive = better)."""
    return reference - value if lower_is_better(metric) else value - reference


class TableValues(Protocol):
    """One table of the evaluation as a rule reads it (:class:`metarec.gate.checks.Numbers`)."""

    table: Table
    method: str
    basis: str

    def value(self, scenario: str, cell: str, method: str, metric: str) -> float | None:
        """The candidate evaluation's ``metric`` of ``method`` in one cell (None: missing)."""
        ...

    def production_value(self, scenario: str, cell: str, metric: str) -> float | None:
        """Production's ``metric`` in one cell (None: missing or no production)."""
        ...

    def has_production(self) -> bool:
        """Whether production's table has any cell."""
        ...


@dataclass(frozen=True)
class Judgement:
    """A rule's verdict on one candidate value and its reference."""

    observed: float | None
    passed: bool
    detail: str


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(
        min_length=1, description="Metric name, e.g. mae, rmse, ndcg@5; ndcg@20 (ranking)."
    )
    table: Table = Field(
        default="rating",
        description="`rating`: the card's `metrics` (rating prediction); `ranking`: the card's "
        "`ranking` (whole-catalogue top-N of the served ranker).",
    )
    scenarios: list[str] | None = Field(
        default=None, description="Only these scenarios (default: every scenario evaluated)."
    )
    support_sizes: list[int | str] | None = Field(
        default=None,
        description="Rating rules: only these support sizes, e.g. [5, 10, all] (default: every "
        "one evaluated).",
    )
    ranking_cells: list[str] | None = Field(
        default=None,
        description="Ranking rules: only these cells, `<order>@<K>` with order `time` or "
        "`random`, e.g. [random@10, time@10] (default: every one evaluated).",
    )
    cells: Literal["each", "mean"] = Field(
        default="each",
        description="`each`: every (scenario, cell) must pass; `mean`: their mean.",
    )

    @field_validator("ranking_cells")
    @classmethod
    def _cell_names(cls, cells: list[str] | None) -> list[str] | None:
        bad = [cell for cell in cells or [] if not RANKING_CELL.match(str(cell))]
        if bad:
            raise ValueError(
                f"ranking cells are `<order>@<K>` with order `time` or `random` and K a "
                f"positive integer, e.g. random@10 (got {', '.join(map(str, bad))})"
            )
        return cells

    @model_validator(mode="after")
    def _selector_fits_table(self) -> _Rule:
        if self.table == "ranking" and self.support_sizes is not None:
            raise ValueError(
                "`support_sizes` selects cells of the rating table; a `table: ranking` rule "
                "selects its cells with `ranking_cells`, e.g. [random@10]"
            )
        if self.table == "rating" and self.ranking_cells is not None:
            raise ValueError(
                "`ranking_cells` needs `table: ranking` (rating rules select cells with "
                "`support_sizes`)"
            )
        return self

    kind: ClassVar[RuleKind]

    def label(self) -> str:
        """Human-readable rule."""
        raise NotImplementedError

    @property
    def threshold(self) -> float | None:
        """The limit the rule puts on the observed number (stored with every check)."""
        raise NotImplementedError

    def reference_name(self, production: str) -> str | None:
        """What the candidate is compared with (``production``: e.g. ``production v3``)."""
        return None

    def reference(self, values: TableValues, scenario: str, cell: str) -> float | None:
        """The value the candidate's is compared with in one cell (None: none or missing)."""
        return None

    def unavailable(self, values: TableValues, production: str) -> str | None:
        """Why the rule cannot be applied to this table at all (None: it can)."""
        return None

    def judge(
        self, value: float | None, reference: float | None, *, method: str, reference_name: str
    ) -> Judgement:
        """The verdict on the candidate's ``value`` (of ``method``) against ``reference``."""
        raise NotImplementedError

    def _subject(self) -> str:
        return self.metric if self.table == "rating" else f"ranking {self.metric}"

    def _scope(self) -> str:
        parts: list[str] = [self.cells]
        if self.scenarios is not None:
            parts.append("/".join(self.scenarios))
        selected = self.support_sizes if self.table == "rating" else self.ranking_cells
        if selected is not None:
            parts.append("/".join(str(cell) for cell in selected))
        return f"({', '.join(parts)})"


class _DirectedRule(_Rule):
    """A rule that compares two values, so its metric needs a better direction.

    Subclasses say how a gain (positive = the candidate is better) becomes the observed number
    and whether that passes (``_observe``).
    """

    verb: ClassVar[str]
    bound: ClassVar[str]  # how the observed number relates to the threshold: ≥ or ≤
    against: ClassVar[str]  # what a relative rule's number is a fraction of
    if TYPE_CHECKING:
        # A field of each subclass (its description names the reference); not declared here,
        # so the policy's JSON, and its digest, keep their field order.
        relative: bool

    @model_validator(mode="after")
    def _metric_has_direction(self) -> _DirectedRule:
        if not has_direction(self.metric):
            raise ValueError(
                f"`{self.metric}` ({DIRECTIONLESS[self.metric.lower()]}) is neither better "
                "higher nor lower, so it cannot be a margin or a regression: bound it with an "
                "absolute rule (`min`/`max`) instead"
            )
        return self

    def _observe(self, gain: float) -> tuple[float, bool]:
        raise NotImplementedError

    def _comparison(self) -> str:
        raise NotImplementedError

    def label(self) -> str:
        """Human-readable rule."""
        unit = f"×{self.against}" if self.relative else ""
        return (
            f"{self.kind}: {self._subject()} {self._comparison()} by {self.bound} "
            f"{self.threshold:g}{unit} {self._scope()}"
        )

    def judge(
        self, value: float | None, reference: float | None, *, method: str, reference_name: str
    ) -> Judgement:
        """Compare the candidate's ``value`` with ``reference`` (either missing: fails)."""
        if value is None or reference is None:
            missing = "candidate" if value is None else reference_name
            return Judgement(None, False, f"{self.metric} of {missing} missing: cannot compare")
        gain = improvement(self.metric, value, reference)
        if self.relative and reference:  # a zero reference keeps the absolute difference
            gain = gain / abs(reference)
        observed, passed = self._observe(gain)
        return Judgement(
            observed,
            passed,
            f"{self.verb} {observed:+.4f} vs {reference_name} "
            f"({'met' if passed else 'broken'}, limit {self.threshold:g})",
        )


class AbsoluteRule(_Rule):
    """The candidate's metric must stay within bounds."""

    kind: ClassVar[RuleKind] = "absolute"

    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> AbsoluteRule:
        if self.max is None and self.min is None:
            raise ValueError("an absolute rule needs `max`, `min` or both")
        return self

    def label(self) -> str:
        """Human-readable rule."""
        bounds = []
        if self.min is not None:
            bounds.append(f"≥ {self.min:g}")
        if self.max is not None:
            bounds.append(f"≤ {self.max:g}")
        return f"absolute: {self._subject()} {' and '.join(bounds)} {self._scope()}"

    @property
    def threshold(self) -> float | None:
        """``max`` when set, else ``min``."""
        return self.max if self.max is not None else self.min

    def judge(
        self, value: float | None, reference: float | None, *, method: str, reference_name: str
    ) -> Judgement:
        """Whether ``value`` lies within the bounds (``reference`` is unused)."""
        if value is None:
            return Judgement(None, False, f"{self.metric} of {method} missing")
        broken = []
        if self.max is not None and value > self.max:
            broken.append(f"{value:.4f} > max {self.max:g}")
        if self.min is not None and value < self.min:
            broken.append(f"{value:.4f} < min {self.min:g}")
        return Judgement(value, not broken, "; ".join(broken) or "within bounds")


class MarginRule(_DirectedRule):
    """The candidate must beat a baseline method by at least ``min_improvement``."""

    kind: ClassVar[RuleKind] = "margin"
    verb: ClassVar[str] = "improvement"
    bound: ClassVar[str] = "≥"
    against: ClassVar[str] = "baseline"

    over: str = Field(min_length=1, description="Baseline method, e.g. global_mean, item_bias.")
    min_improvement: float = Field(
        default=0.0,
        description="Required improvement (direction-aware: lower error or higher nDCG).",
    )
    relative: bool = Field(
        default=False, description="Improvement as a fraction of the baseline's value."
    )

    def _comparison(self) -> str:
        return f"better than {self.over}"

    @property
    def threshold(self) -> float:
        """The required improvement."""
        return self.min_improvement

    def reference_name(self, production: str) -> str:
        """The baseline method."""
        return self.over

    def reference(self, values: TableValues, scenario: str, cell: str) -> float | None:
        """The baseline's value in the candidate's own evaluation."""
        return values.value(scenario, cell, self.over, self.metric)

    def _observe(self, gain: float) -> tuple[float, bool]:
        return gain, gain >= self.min_improvement - TOLERANCE


class RegressionRule(_DirectedRule):
    """The candidate may be worse than production by at most ``max_regression``."""

    kind: ClassVar[RuleKind] = "regression"
    verb: ClassVar[str] = "regression"
    bound: ClassVar[str] = "≤"
    against: ClassVar[str] = "production"

    max_regression: float = Field(
        ge=0.0,
        description="Allowed worsening (direction-aware), the margin of the paired test: the "
        "rule is broken only when the candidate is worse by more than it, significantly.",
    )
    relative: bool = Field(
        default=False, description="Regression as a fraction of production's value."
    )
    alpha: float = Field(
        default=0.05,
        gt=0.0,
        lt=0.5,
        description="Level of the paired test over users: broken only when the one-sided "
        "1 - alpha lower confidence bound of the regression is above `max_regression`.",
    )
    resamples: int = Field(
        default=2000, ge=100, description="Bootstrap resamples of the paired test."
    )
    seed: int = Field(
        default=0, description="Seeds the paired bootstrap (same numbers, same test)."
    )

    def _comparison(self) -> str:
        return "worse than production"

    @property
    def threshold(self) -> float:
        """The allowed worsening."""
        return self.max_regression

    def reference_name(self, production: str) -> str:
        """Production, e.g. ``production v3``."""
        return production

    def reference(self, values: TableValues, scenario: str, cell: str) -> float | None:
        """Production's value on the same cell."""
        return values.production_value(scenario, cell, self.metric)

    def unavailable(self, values: TableValues, production: str) -> str | None:
        """A production whose card predates ranking evaluation has no ranking table."""
        if values.table != "ranking" or values.has_production():
            return None
        return (
            f"{production} has no ranking metrics ({values.basis}; its card predates ranking "
            "evaluation): pass the candidate's training set (`metarec gate --training-set`) to "
            "re-evaluate production's ranker on the candidate's held-out users"
        )

    def _observe(self, gain: float) -> tuple[float, bool]:
        return -gain, -gain <= self.max_regression + TOLERANCE

    def judge(
        self,
        value: float | None,
        reference: float | None,
        *,
        method: str,
        reference_name: str,
        paired: UserCells | None = None,
    ) -> Judgement:
        """Judge the regression paired over users when both versions' per-user values exist.

        Without them (production's stored card numbers, or a metric without per-user values),
        the bare mean difference is judged against the margin, and the detail says so.
        """
        if value is None or reference is None or not paired:
            judged = super().judge(value, reference, method=method, reference_name=reference_name)
            if value is None or reference is None:
                return judged
            return Judgement(judged.observed, judged.passed, f"{judged.detail}; {NOT_PAIRED}")
        test = paired_test(
            paired,
            lower_is_better=lower_is_better(self.metric),
            margin=self.max_regression,
            alpha=self.alpha,
            resamples=self.resamples,
            seed=self.seed,
            scale=abs(reference) if self.relative and reference else 1.0,
        )
        verdict = (
            "broken: worse by more than the margin, significantly"
            if test.broken
            else "met: not significantly worse than production by more than the margin"
        )
        return Judgement(
            test.regression,
            not test.broken,
            f"regression {test.regression:+.4f} vs {reference_name} ({test.describe()}; {verdict})",
        )


Rule = AbsoluteRule | MarginRule | RegressionRule

"""The evaluation gate policy: a declared YAML file, validated by pydantic.

Example (the shipped default is ``default_policy.yaml``)::

    name: default
    absolute:                      # the candidate's own numbers
      - {metric: mae, max: 1.0}
    margins:                       # candidate vs the baselines in the same evaluation
      - {metric: mae, over: global_mean, min_improvement: 0.01, cells: mean}
      - {table: ranking, metric: ndcg@20, over: popularity, cells: mean}
    regression:                    # candidate vs production, on the same held-out users
      - {metric: mae, max_regression: 0.02}

Every rule reads one of the card's two tables (``table``):

* ``rating`` (default): ``metrics[scenario][support_size][method][metric]``; ``mae`` and
  ``rmse`` (lower is better), ``ndcg@k`` (higher is better). The candidate is ``method`` (default:
  the card's algorithm); ``support_sizes`` restricts the cells, e.g. ``[5, all]``.
* ``ranking``: ``ranking[scenario][cell][method][metric]``, whole-catalogue top-N metrics of a new
  user's ranking; cells are ``<order>@<K>`` (support order ``time`` or ``random``, ``K`` support
  items), metrics ``recall@20``, ``ndcg@20``, ``hit@10``, ``mrr``, ``coverage``,
  ``personalisation`` (higher is better) and ``popularity`` (no better direction: absolute rules
  only). The candidate is ``ranking_method`` (default ``ranker``, the served ranker);
  ``ranking_cells`` restricts the cells, e.g. ``[random@10]``.

Every rule applies to each (scenario, cell) of its table, or to their mean with ``cells: mean``;
``scenarios`` restricts the scenarios.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from metarec.errors import GatePolicyError

LOWER_IS_BETTER = ("mae", "rmse", "mse")
# Neither larger nor smaller is better: only absolute bounds may be put on these.
DIRECTIONLESS = {"popularity": "the mean popularity percentile of the recommended items"}
DEFAULT_POLICY = "default_policy.yaml"
RANKING_CELL = re.compile(r"^(time|random)@[1-9][0-9]*$")

Table = Literal["rating", "ranking"]


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better (errors) or larger (rankings)."""
    return metric.lower() in LOWER_IS_BETTER


def has_direction(metric: str) -> bool:
    """Whether ``metric`` has a better direction (margins and regressions need one)."""
    return metric.lower() not in DIRECTIONLESS


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
    """A rule that compares two values, so its metric needs a better direction."""

    @model_validator(mode="after")
    def _metric_has_direction(self) -> _DirectedRule:
        if not has_direction(self.metric):
            raise ValueError(
                f"`{self.metric}` ({DIRECTIONLESS[self.metric.lower()]}) is neither better "
                "higher nor lower, so it cannot be a margin or a regression: bound it with an "
                "absolute rule (`min`/`max`) instead"
            )
        return self


class AbsoluteRule(_Rule):
    """The candidate's metric must stay within bounds."""

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


class MarginRule(_DirectedRule):
    """The candidate must beat a baseline method by at least ``min_improvement``."""

    over: str = Field(min_length=1, description="Baseline method, e.g. global_mean, item_bias.")
    min_improvement: float = Field(
        default=0.0,
        description="Required improvement (direction-aware: lower error or higher nDCG).",
    )
    relative: bool = Field(
        default=False, description="Improvement as a fraction of the baseline's value."
    )

    def label(self) -> str:
        """Human-readable rule."""
        unit = "×baseline" if self.relative else ""
        return (
            f"margin: {self._subject()} better than {self.over} by ≥ "
            f"{self.min_improvement:g}{unit} {self._scope()}"
        )


class RegressionRule(_DirectedRule):
    """The candidate may be worse than production by at most ``max_regression``."""

    max_regression: float = Field(ge=0.0, description="Allowed worsening (direction-aware).")
    relative: bool = Field(
        default=False, description="Regression as a fraction of production's value."
    )

    def label(self) -> str:
        """Human-readable rule."""
        unit = "×production" if self.relative else ""
        return (
            f"regression: {self._subject()} worse than production by ≤ "
            f"{self.max_regression:g}{unit} {self._scope()}"
        )


class GatePolicy(BaseModel):
    """A complete gate policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="custom", min_length=1)
    method: str | None = Field(
        default=None,
        description="Which method of the evaluation is the candidate (default: the card's "
        "`algorithm`, e.g. maml).",
    )
    ranking_method: str = Field(
        default="ranker",
        min_length=1,
        description="Which method of the card's ranking table is the candidate (default: "
        "`ranker`, the served ranker); production's is the same method of its ranking table.",
    )
    require_same_users: bool = Field(
        default=True,
        description="Refuse a production comparison made on other held-out users than the "
        "candidate's.",
    )
    absolute: list[AbsoluteRule] = Field(default_factory=list)
    margins: list[MarginRule] = Field(default_factory=list)
    regression: list[RegressionRule] = Field(default_factory=list)

    def compares_production(self, table: Table) -> bool:
        """Whether a regression rule reads ``table`` (so production's numbers of it count)."""
        return any(rule.table == table for rule in self.regression)

    def digest(self) -> str:
        """sha256 of the policy's canonical JSON (stored with every decision)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def load_policy(path: Path | None = None) -> GatePolicy:
    """Read a gate policy YAML file (default: the policy shipped with MetaRec).

    Raises:
        GatePolicyError: The file is missing, not YAML, or not a valid policy.
    """
    if path is None:
        text = resources.files("metarec.gate").joinpath(DEFAULT_POLICY).read_text()
        where = f"metarec/gate/{DEFAULT_POLICY}"
    else:
        path = Path(path)
        if not path.is_file():
            raise GatePolicyError(
                f"Gate policy {path} not found.",
                fix="pass an existing YAML file (--policy or registry.gate_policy).",
            )
        text = path.read_text()
        where = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GatePolicyError(
            f"Gate policy {where} is not valid YAML ({exc}).", fix="correct the YAML syntax."
        ) from exc
    try:
        return GatePolicy.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise GatePolicyError(
            f"Gate policy {where}: invalid '{field}': "
            f"{first['msg'].removeprefix('Value error, ')}.",
            fix="see docs/registry.md (gate policy) for the fields.",
        ) from exc

"""The evaluation gate policy: a declared YAML file, validated by pydantic.

Example (the shipped default is ``default_policy.yaml``)::

    name: default
    absolute:                      # the candidate's own numbers
      - {metric: mae, max: 1.0}
    margins:                       # candidate vs the baselines in the same evaluation
      - {metric: mae, over: global_mean, min_improvement: 0.01, cells: mean}
    regression:                    # candidate vs production, on the same held-out users
      - {metric: mae, max_regression: 0.02}

Metrics are the model card's: ``mae`` and ``rmse`` (lower is better), ``ndcg@k`` (higher is
better). Every rule applies to each (scenario, support size) cell of the evaluation, or to their
mean with ``cells: mean``; ``scenarios``/``support_sizes`` restrict the cells.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from metarec.errors import GatePolicyError

LOWER_IS_BETTER = ("mae", "rmse", "mse")
DEFAULT_POLICY = "default_policy.yaml"


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better (errors) or larger (rankings)."""
    return metric.lower() in LOWER_IS_BETTER


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(min_length=1, description="Metric name, e.g. mae, rmse, ndcg@5.")
    scenarios: list[str] | None = Field(
        default=None, description="Only these scenarios (default: every scenario evaluated)."
    )
    support_sizes: list[int | str] | None = Field(
        default=None,
        description="Only these support sizes, e.g. [5, 10, all] (default: every one evaluated).",
    )
    cells: Literal["each", "mean"] = Field(
        default="each",
        description="`each`: every (scenario, support size) cell must pass; `mean`: their mean.",
    )


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
        return f"absolute: {self.metric} {' and '.join(bounds)} ({self.cells})"


class MarginRule(_Rule):
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
            f"margin: {self.metric} better than {self.over} by ≥ {self.min_improvement:g}{unit} "
            f"({self.cells})"
        )


class RegressionRule(_Rule):
    """The candidate may be worse than production by at most ``max_regression``."""

    max_regression: float = Field(ge=0.0, description="Allowed worsening (direction-aware).")
    relative: bool = Field(
        default=False, description="Regression as a fraction of production's value."
    )

    def label(self) -> str:
        """Human-readable rule."""
        unit = "×production" if self.relative else ""
        return (
            f"regression: {self.metric} worse than production by ≤ "
            f"{self.max_regression:g}{unit} ({self.cells})"
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
    require_same_users: bool = Field(
        default=True,
        description="Refuse a production comparison made on other held-out users than the "
        "candidate's.",
    )
    absolute: list[AbsoluteRule] = Field(default_factory=list)
    margins: list[MarginRule] = Field(default_factory=list)
    regression: list[RegressionRule] = Field(default_factory=list)

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
            f"Gate policy {where}: invalid '{field}': {first['msg']}.",
            fix="see docs/registry.md (gate policy) for the fields.",
        ) from exc

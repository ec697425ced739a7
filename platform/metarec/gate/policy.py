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

The rule types, and what each means, are in :mod:`metarec.gate.rules`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metarec.digests import sha256_bytes
from metarec.errors import GatePolicyError
from metarec.gate.rules import (
    DIRECTIONLESS,
    LOWER_IS_BETTER,
    RANKING_CELL,
    AbsoluteRule,
    MarginRule,
    RegressionRule,
    Rule,
    Table,
    has_direction,
    lower_is_better,
)

__all__ = [
    "DEFAULT_POLICY",
    "DIRECTIONLESS",
    "LOWER_IS_BETTER",
    "RANKING_CELL",
    "AbsoluteRule",
    "GatePolicy",
    "MarginRule",
    "RegressionRule",
    "Rule",
    "Table",
    "has_direction",
    "load_policy",
    "lower_is_better",
]

DEFAULT_POLICY = "default_policy.yaml"


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

    def rules(self) -> list[Rule]:
        """Every rule, in the order of the decision's checks (absolute, margins, regression)."""
        return [*self.absolute, *self.margins, *self.regression]

    def compares_production(self, table: Table) -> bool:
        """Whether a regression rule reads ``table`` (so production's numbers of it count)."""
        return any(rule.table == table for rule in self.regression)

    def digest(self) -> str:
        """sha256 of the policy's canonical JSON (stored with every decision)."""
        return sha256_bytes(self.model_dump_json().encode())


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

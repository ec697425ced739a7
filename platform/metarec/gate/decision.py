"""The gate's decision: a pure function of a policy, numbers and the time it is made.

``decide`` never reads files, databases, models or the clock: the caller passes the candidate's
numbers (with its baselines, from the model card), production's numbers on the same held-out
users when a production version exists, and the decision time. A card holds two tables, and
every rule reads one of them:

* ``rating``: ``metrics[scenario][support_size][method][metric]`` (rating prediction);
* ``ranking``: ``ranking[scenario][cell][method][metric]`` (whole-catalogue top-N of a new user,
  cells ``<order>@<K>``); the candidate is the policy's ``ranking_method`` (the served ranker).

Every rule, whatever its type, produces its check rows through
:func:`metarec.gate.checks.rule_checks` (one per cell or per mean, with every number used); the
decision also carries a compact ``ranking_summary``: per ranking cell, the candidate's nDCG@20
beside every baseline's and production's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from metarec.clock import as_utc
from metarec.gate.checks import (
    NO_RANKING,
    GateCheck,
    Metrics,
    Numbers,
    RankingMetrics,
    comparability_checks,
    coverage_check,
    has_cells,
    rule_checks,
    select,
)
from metarec.gate.policy import GatePolicy

__all__ = [
    "NO_RANKING",
    "SUMMARY_METRIC",
    "GateCheck",
    "GateDecision",
    "Metrics",
    "RankingMetrics",
    "RankingSummaryRow",
    "decide",
]

SUMMARY_METRIC = "ndcg@20"
NO_PRODUCTION = "no production version: regression rules not applied"


class RankingSummaryRow(BaseModel):
    """One ranking cell: the candidate's value beside every baseline's and production's."""

    scenario: str
    cell: str
    metric: str
    candidate: float | None
    baselines: dict[str, float | None] = Field(
        description="Every other method of the candidate's evaluation, by name."
    )
    production: float | None = Field(
        default=None, description="Production's value on the same cell, when compared."
    )


class GateDecision(BaseModel):
    """The gate's verdict on one candidate artifact, with every check."""

    accepted: bool
    model: str
    artifact_digest: str
    candidate_method: str
    policy_name: str
    policy_digest: str
    production_version: int | None
    production_method: str | None
    comparison_basis: str
    checks: list[GateCheck]
    notes: list[str]
    decided_at: datetime
    ranking_method: str | None = None
    ranking_comparison_basis: str | None = None
    ranking_summary: list[RankingSummaryRow] = Field(default_factory=list)

    @property
    def broken(self) -> list[GateCheck]:
        """The checks that failed."""
        return [check for check in self.checks if not check.passed]

    def summary(self) -> str:
        """One line: accepted, or the broken rules."""
        if self.accepted:
            return f"accepted ({len(self.checks)} checks passed)"
        rules = sorted({check.rule for check in self.broken})
        return f"rejected, broken: {'; '.join(rules)}"


def decide(
    policy: GatePolicy,
    *,
    model: str,
    artifact_digest: str,
    candidate_metrics: Metrics,
    candidate_method: str,
    decided_at: datetime,
    production_metrics: Metrics | None = None,
    production_method: str | None = None,
    production_version: int | None = None,
    comparison_basis: str = "no production version",
    same_users: bool = True,
    notes: Sequence[str] = (),
    candidate_ranking: RankingMetrics | None = None,
    production_ranking: RankingMetrics | None = None,
    ranking_comparison_basis: str | None = None,
    ranking_same_users: bool | None = None,
) -> GateDecision:
    """Apply a policy to the numbers: ``accepted`` only when every check passed.

    ``candidate_metrics``/``candidate_ranking``: the card's two tables (candidates
    ``candidate_method`` and the policy's ``ranking_method``); ``production_*``: production's, on
    the same users if ``same_users``/``ranking_same_users``, obtained as ``*comparison_basis``
    says (ranking defaults: the rating table's). ``decided_at``: naive is taken as UTC.
    """
    rating = Numbers(
        table="rating",
        candidate=candidate_metrics,
        method=candidate_method,
        production=production_metrics,
        production_method=production_method or candidate_method,
        same_users=same_users,
        basis=comparison_basis,
    )
    ranking = _ranking_numbers(
        policy,
        candidate_ranking,
        production_ranking,
        same_users=same_users if ranking_same_users is None else ranking_same_users,
        basis=ranking_comparison_basis or comparison_basis,
    )
    has_production = production_version is not None and production_metrics is not None
    checks = _checks(policy, rating, ranking, production_version if has_production else None)
    notes = [*notes, NO_PRODUCTION] if policy.regression and not has_production else [*notes]
    return GateDecision(
        accepted=bool(checks) and all(check.passed for check in checks),
        model=model,
        artifact_digest=artifact_digest,
        candidate_method=candidate_method,
        policy_name=policy.name,
        policy_digest=policy.digest(),
        production_version=production_version,
        production_method=production_method,
        comparison_basis=comparison_basis,
        checks=checks,
        notes=notes,
        decided_at=as_utc(decided_at),
        **_ranking_fields(ranking, compared=has_production),
    )


def _ranking_fields(ranking: Numbers, *, compared: bool) -> dict[str, Any]:
    """The decision's ranking fields (production's numbers only when it was compared)."""
    return {
        "ranking_method": ranking.method,
        "ranking_comparison_basis": ranking.basis if compared else None,
        "ranking_summary": _ranking_summary(
            ranking if compared else replace(ranking, production=None)
        ),
    }


def _ranking_numbers(
    policy: GatePolicy,
    candidate: RankingMetrics | None,
    production: RankingMetrics | None,
    *,
    same_users: bool,
    basis: str,
) -> Numbers:
    """The ranking table: the policy's ``ranking_method`` is the candidate, and production's."""
    return Numbers(
        table="ranking",
        candidate=candidate or {},
        method=policy.ranking_method,
        production=production,
        production_method=policy.ranking_method,
        same_users=same_users,
        basis=basis,
    )


def _checks(
    policy: GatePolicy, rating: Numbers, ranking: Numbers, production_version: int | None
) -> list[GateCheck]:
    """Every rule's checks, in one loop over the policy's typed rules.

    The order is the stored decisions': coverage, absolute and margin rules, then (with a
    production version) the comparability checks and the regression rules.
    """
    tables = {"rating": rating, "ranking": ranking}
    production = f"production v{production_version}"
    own: list[GateCheck] = [] if has_cells(rating.candidate) else [coverage_check()]
    against_production: list[GateCheck] = []
    for rule in policy.rules():
        if rule.kind == "regression" and production_version is None:
            continue
        checks = rule_checks(rule, tables[rule.table], production=production)
        (against_production if rule.kind == "regression" else own).extend(checks)
    if production_version is None:
        return own
    compared = [rating]
    if policy.compares_production("ranking") and ranking.has_production():
        compared.append(ranking)
    comparability = comparability_checks(
        compared, require_same_users=policy.require_same_users, production=production
    )
    return [*own, *comparability, *against_production]


def _ranking_summary(numbers: Numbers, *, metric: str = SUMMARY_METRIC) -> list[RankingSummaryRow]:
    """Per ranking cell: the candidate's ``metric`` beside every baseline's and production's."""
    rows = []
    for scenario, cell in select(numbers.candidate):
        methods = sorted((numbers.candidate.get(scenario) or {}).get(cell) or {})
        rows.append(
            RankingSummaryRow(
                scenario=scenario,
                cell=cell,
                metric=metric,
                candidate=numbers.value(scenario, cell, numbers.method, metric),
                baselines={
                    method: numbers.value(scenario, cell, method, metric)
                    for method in methods
                    if method != numbers.method
                },
                production=numbers.production_value(scenario, cell, metric),
            )
        )
    return rows

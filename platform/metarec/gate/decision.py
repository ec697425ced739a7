"""The gate's decision: a pure function of a policy and numbers.

``decide`` never reads files, databases or models: the caller passes the candidate's numbers
(with its baselines, from the model card) and, when a production version exists, production's
numbers on the same held-out users. A card holds two tables, and every rule reads one of them:

* ``rating``: ``metrics[scenario][support_size][method][metric]`` (rating prediction);
* ``ranking``: ``ranking[scenario][cell][method][metric]`` (whole-catalogue top-N of a new user,
  cells ``<order>@<K>``); the candidate is the policy's ``ranking_method`` (the served ranker).

Every rule produces one check row per cell (or per mean) with every number used; the decision
also carries a compact ``ranking_summary``: per ranking cell, the candidate's nDCG@20 beside
every baseline's and production's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from metarec.gate.policy import (
    AbsoluteRule,
    GatePolicy,
    MarginRule,
    RegressionRule,
    Table,
    lower_is_better,
)

# metrics[scenario][support_size][method][metric] -> value (the model card's `metrics`).
Metrics = Mapping[str, Mapping[Any, Mapping[str, Mapping[str, float]]]]
# ranking[scenario][cell][method][metric] -> value (the model card's `ranking`); cells are
# "<order>@<K>", e.g. "random@10".
RankingMetrics = Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]

SUMMARY_METRIC = "ndcg@20"
NO_RANKING = (
    "the card has no ranking metrics; retrain with this MetaRec (its training run evaluates the "
    "served ranker and the baselines on the whole catalogue into card['ranking']), then gate again"
)

Rule = AbsoluteRule | MarginRule | RegressionRule
CheckKind = Literal["absolute", "margin", "regression", "comparability", "coverage"]
ValueOf = Callable[[str, str], float | None]


class GateCheck(BaseModel):
    """One rule applied to one cell (or to the mean of cells).

    For ranking rules (``table == "ranking"``) ``support_size`` holds the ranking cell, e.g.
    ``random@10``.
    """

    rule: str
    kind: CheckKind
    scenario: str
    support_size: str
    metric: str
    value: float | None
    reference: float | None
    reference_name: str | None
    threshold: float | None
    observed: float | None
    passed: bool
    detail: str
    table: Table = "rating"


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


@dataclass(frozen=True)
class _Numbers:
    """One table of the evaluation: the candidate's and (maybe) production's."""

    table: Table
    candidate: Metrics
    method: str
    production: Metrics | None
    production_method: str
    same_users: bool
    basis: str

    def value(self, scenario: str, cell: str, method: str, metric: str) -> float | None:
        return _get(self.candidate, scenario, cell, method, metric)

    def production_value(self, scenario: str, cell: str, metric: str) -> float | None:
        return _get(self.production, scenario, cell, self.production_method, metric)


def _get(
    metrics: Metrics | None, scenario: str, size: str, method: str, metric: str
) -> float | None:
    if metrics is None:
        return None
    by_size = metrics.get(scenario) or {}
    cell = by_size.get(size)
    if cell is None:
        # Card support sizes may be ints (in memory) or strings (after JSON).
        cell = next((value for key, value in by_size.items() if str(key) == size), None)
    if cell is None:
        return None
    value = (cell.get(method) or {}).get(metric)
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _has_cells(metrics: Metrics | None) -> bool:
    return bool(metrics) and any(by_cell for by_cell in metrics.values())


def _cell_order(cell: tuple[str, str]) -> tuple[Any, ...]:
    """Sort key: scenario, then support sizes (``all`` last) or ranking cells (order, K)."""
    scenario, name = cell
    order, _, k = name.partition("@")
    if k.isdigit():
        return (scenario, 1, order, int(k), name)
    return (scenario, 0, "", int(name) if name.isdigit() else 1 << 30, name)


def _select(
    metrics: Metrics,
    *,
    scenarios: Sequence[str] | None = None,
    names: Sequence[Any] | None = None,
) -> list[tuple[str, str]]:
    """The (scenario, cell) pairs of ``metrics``, restricted and in a stable order."""
    wanted = None if names is None else {str(name) for name in names}
    cells = [
        (str(scenario), str(cell))
        for scenario, by_cell in metrics.items()
        if scenarios is None or scenario in scenarios
        for cell in by_cell
        if wanted is None or str(cell) in wanted
    ]
    return sorted(cells, key=_cell_order)


def _cells(metrics: Metrics, rule: Rule) -> list[tuple[str, str]]:
    names = rule.support_sizes if rule.table == "rating" else rule.ranking_cells
    return _select(metrics, scenarios=rule.scenarios, names=names)


def _improvement(metric: str, value: float, reference: float) -> float:
    """How much better ``value`` is than ``reference`` (positive = better)."""
    return reference - value if lower_is_better(metric) else value - reference


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean, or None when there is no value or any is missing (fails closed)."""
    known = [value for value in values if value is not None]
    if not known or len(known) != len(values):
        return None
    return sum(known) / len(known)


def _pairs(
    cells: Sequence[tuple[str, str]],
    mode: str,
    value_of: ValueOf,
    reference_of: ValueOf,
) -> Iterable[tuple[str, str, float | None, float | None]]:
    if mode == "each":
        for scenario, size in cells:
            yield scenario, size, value_of(scenario, size), reference_of(scenario, size)
        return
    value = _mean([value_of(s, z) for s, z in cells])
    reference = _mean([reference_of(s, z) for s, z in cells])
    yield "mean", f"{len(cells)} cells", value, reference


def decide(
    policy: GatePolicy,
    *,
    model: str,
    artifact_digest: str,
    candidate_metrics: Metrics,
    candidate_method: str,
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
    """Apply a policy to the numbers and return the decision.

    Args:
        policy: The gate policy.
        model: Registered model name the candidate is for.
        artifact_digest: The candidate artifact's digest (binds the decision to it).
        candidate_metrics: ``metrics[scenario][support_size][method][metric]`` from the
            candidate's evaluation, including its baselines.
        candidate_method: The candidate's method name inside ``candidate_metrics``.
        production_metrics: Production's metrics on the same held-out users, same layout
            (None: no production version).
        production_method: Production's method name inside ``production_metrics``.
        production_version: Production's version number (for the record).
        comparison_basis: How production's numbers were obtained (for the record).
        same_users: Whether production's numbers are on the candidate's held-out users.
        notes: Extra notes to keep with the decision.
        candidate_ranking: The card's ``ranking[scenario][cell][method][metric]`` (None or
            empty: the card has none, and every ranking rule fails with the fix).
        production_ranking: Production's ranking table, same layout (None or empty: none
            known, and ranking regression rules fail with the fix).
        ranking_comparison_basis: How production's ranking numbers were obtained (default:
            ``comparison_basis``).
        ranking_same_users: Whether production's ranking numbers are on the candidate's
            held-out users (default: ``same_users``).

    Returns:
        The decision; ``accepted`` only when every check passed.
    """
    rating = _Numbers(
        table="rating",
        candidate=candidate_metrics,
        method=candidate_method,
        production=production_metrics,
        production_method=production_method or candidate_method,
        same_users=same_users,
        basis=comparison_basis,
    )
    ranking = _Numbers(
        table="ranking",
        candidate=candidate_ranking or {},
        method=policy.ranking_method,
        production=production_ranking,
        production_method=policy.ranking_method,
        same_users=same_users if ranking_same_users is None else ranking_same_users,
        basis=ranking_comparison_basis or comparison_basis,
    )
    tables = {"rating": rating, "ranking": ranking}
    notes = list(notes)
    checks: list[GateCheck] = []
    if not _has_cells(candidate_metrics):
        checks.append(_coverage_check())
    for rule in policy.absolute:
        checks.extend(_absolute_checks(rule, tables[rule.table]))
    for rule in policy.margins:
        checks.extend(_margin_checks(rule, tables[rule.table]))
    has_production = production_version is not None and production_metrics is not None
    if production_version is not None and production_metrics is not None:
        checks.extend(_comparability_checks(policy, rating, ranking, production_version))
        for rule in policy.regression:
            checks.extend(_regression_checks(rule, tables[rule.table], production_version))
    elif policy.regression:
        notes.append("no production version: regression rules not applied")
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
        decided_at=datetime.now(UTC),
        ranking_method=policy.ranking_method,
        ranking_comparison_basis=ranking.basis if has_production else None,
        ranking_summary=_ranking_summary(
            ranking if has_production else replace(ranking, production=None)
        ),
    )


def _ranking_summary(numbers: _Numbers, *, metric: str = SUMMARY_METRIC) -> list[RankingSummaryRow]:
    """Per ranking cell: the candidate's ``metric`` beside every baseline's and production's."""
    rows = []
    for scenario, cell in _select(numbers.candidate):
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


def _coverage_check() -> GateCheck:
    return GateCheck(
        rule="coverage: the card has evaluation metrics",
        kind="coverage",
        scenario="-",
        support_size="-",
        metric="-",
        value=None,
        reference=None,
        reference_name=None,
        threshold=None,
        observed=None,
        passed=False,
        detail="the model card has no metrics: evaluate the candidate before gating",
    )


def _failed(
    rule: Rule, kind: CheckKind, detail: str, *, reference_name: str | None = None
) -> GateCheck:
    """A rule that could not be evaluated at all (fails closed)."""
    return GateCheck(
        rule=rule.label(),
        kind=kind,
        scenario="-",
        support_size="-",
        metric=rule.metric,
        value=None,
        reference=None,
        reference_name=reference_name,
        threshold=None,
        observed=None,
        passed=False,
        detail=detail,
        table=rule.table,
    )


def _unmatched(rule: Rule, kind: CheckKind, numbers: _Numbers) -> GateCheck:
    """The failed check of a rule that matches no cell of the candidate's table."""
    if numbers.table == "ranking" and not _has_cells(numbers.candidate):
        return _failed(rule, kind, NO_RANKING)
    what = "support size" if numbers.table == "rating" else "ranking cell"
    return _failed(rule, kind, f"no evaluated (scenario, {what}) cell matches this rule")


def _absolute_checks(rule: AbsoluteRule, numbers: _Numbers) -> list[GateCheck]:
    cells = _cells(numbers.candidate, rule)
    if not cells:
        return [_unmatched(rule, "absolute", numbers)]
    checks = []
    for scenario, size, value, _ in _pairs(
        cells,
        rule.cells,
        lambda s, z: numbers.value(s, z, numbers.method, rule.metric),
        lambda s, z: 0.0,
    ):
        details = []
        if value is None:
            details.append(f"{rule.metric} of {numbers.method} missing")
        if value is not None and rule.max is not None and value > rule.max:
            details.append(f"{value:.4f} > max {rule.max:g}")
        if value is not None and rule.min is not None and value < rule.min:
            details.append(f"{value:.4f} < min {rule.min:g}")
        checks.append(
            GateCheck(
                rule=rule.label(),
                kind="absolute",
                scenario=scenario,
                support_size=size,
                metric=rule.metric,
                value=value,
                reference=None,
                reference_name=None,
                threshold=rule.max if rule.max is not None else rule.min,
                observed=value,
                passed=not details,
                detail="; ".join(details) or "within bounds",
                table=rule.table,
            )
        )
    return checks


def _margin_checks(rule: MarginRule, numbers: _Numbers) -> list[GateCheck]:
    cells = _cells(numbers.candidate, rule)
    if not cells:
        return [_unmatched(rule, "margin", numbers)]
    return [
        _compare(
            rule,
            kind="margin",
            scenario=scenario,
            size=size,
            value=value,
            reference=reference,
            reference_name=rule.over,
            passes=lambda gain: gain >= rule.min_improvement - 1e-12,
            threshold=rule.min_improvement,
        )
        for scenario, size, value, reference in _pairs(
            cells,
            rule.cells,
            lambda s, z: numbers.value(s, z, numbers.method, rule.metric),
            lambda s, z: numbers.value(s, z, rule.over, rule.metric),
        )
    ]


def _regression_checks(
    rule: RegressionRule, numbers: _Numbers, production_version: int
) -> list[GateCheck]:
    cells = _cells(numbers.candidate, rule)
    if not cells:
        return [_unmatched(rule, "regression", numbers)]
    name = f"production v{production_version}"
    if numbers.table == "ranking" and not _has_cells(numbers.production):
        return [
            _failed(
                rule,
                "regression",
                f"{name} has no ranking metrics ({numbers.basis}; its card predates ranking "
                "evaluation): pass the candidate's training set (`metarec gate --training-set`) "
                "to re-evaluate production's ranker on the candidate's held-out users",
                reference_name=name,
            )
        ]
    return [
        _compare(
            rule,
            kind="regression",
            scenario=scenario,
            size=size,
            value=value,
            reference=reference,
            reference_name=name,
            passes=lambda gain: -gain <= rule.max_regression + 1e-12,
            threshold=rule.max_regression,
        )
        for scenario, size, value, reference in _pairs(
            cells,
            rule.cells,
            lambda s, z: numbers.value(s, z, numbers.method, rule.metric),
            lambda s, z: numbers.production_value(s, z, rule.metric),
        )
    ]


def _comparability_checks(
    policy: GatePolicy, rating: _Numbers, ranking: _Numbers, production_version: int
) -> list[GateCheck]:
    """A comparability check per table whose production numbers are on other users.

    Each fails unless the policy drops ``require_same_users``.
    The rating table is always checked (as before ranking existed); the ranking table only when
    a regression rule reads it and production has ranking numbers.
    """
    checks = []
    if not rating.same_users:
        checks.append(
            _comparability(
                "comparability: production compared on the candidate's held-out users",
                "production's numbers",
                rating,
                policy=policy,
                production_version=production_version,
            )
        )
    if (
        policy.compares_production("ranking")
        and _has_cells(ranking.production)
        and not ranking.same_users
    ):
        checks.append(
            _comparability(
                "comparability: production's ranking compared on the candidate's held-out users",
                "production's ranking numbers",
                ranking,
                policy=policy,
                production_version=production_version,
            )
        )
    return checks


def _comparability(
    rule: str, what: str, numbers: _Numbers, *, policy: GatePolicy, production_version: int
) -> GateCheck:
    return GateCheck(
        rule=rule,
        kind="comparability",
        scenario="-",
        support_size="-",
        metric="-",
        value=None,
        reference=None,
        reference_name=f"production v{production_version}",
        threshold=None,
        observed=None,
        passed=not policy.require_same_users,
        detail=f"{what} ({numbers.basis}) are not on the same held-out users: pass the "
        "candidate's training set (`metarec gate --training-set`) to re-evaluate production "
        "on them",
        table=numbers.table,
    )


def _compare(
    rule: MarginRule | RegressionRule,
    *,
    kind: CheckKind,
    scenario: str,
    size: str,
    value: float | None,
    reference: float | None,
    reference_name: str,
    passes: Callable[[float], bool],
    threshold: float,
) -> GateCheck:
    verb = "improvement" if kind == "margin" else "regression"
    observed = None
    passed = False
    if value is None or reference is None:
        missing = "candidate" if value is None else reference_name
        detail = f"{rule.metric} of {missing} missing: cannot compare"
    else:
        gain = _improvement(rule.metric, value, reference)
        if rule.relative and reference:  # a zero reference keeps the absolute difference
            gain = gain / abs(reference)
        observed = gain if kind == "margin" else -gain
        passed = bool(passes(gain))
        detail = (
            f"{verb} {observed:+.4f} vs {reference_name} "
            f"({'met' if passed else 'broken'}, limit {threshold:g})"
        )
    return GateCheck(
        rule=rule.label(),
        kind=kind,
        scenario=scenario,
        support_size=size,
        metric=rule.metric,
        value=value,
        reference=reference,
        reference_name=reference_name,
        threshold=threshold,
        observed=observed,
        passed=passed,
        detail=detail,
        table=rule.table,
    )

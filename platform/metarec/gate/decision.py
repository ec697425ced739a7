"""The gate's decision: a pure function of a policy and numbers.

``decide`` never reads files, databases or models: the caller passes the candidate's metrics
(with its baselines, from the model card) and, when a production version exists, production's
metrics on the same held-out users. Every rule produces one check row with every number used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from metarec.gate.policy import (
    AbsoluteRule,
    GatePolicy,
    MarginRule,
    RegressionRule,
    lower_is_better,
)

# metrics[scenario][support_size][method][metric] -> value (the model card's layout).
Metrics = Mapping[str, Mapping[Any, Mapping[str, Mapping[str, float]]]]


class GateCheck(BaseModel):
    """One rule applied to one cell (or to the mean of cells)."""

    rule: str
    kind: Literal["absolute", "margin", "regression", "comparability", "coverage"]
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


def _cells(
    metrics: Metrics, rule: AbsoluteRule | MarginRule | RegressionRule
) -> list[tuple[str, str]]:
    cells = []
    for scenario, by_size in metrics.items():
        if rule.scenarios is not None and scenario not in rule.scenarios:
            continue
        for size in by_size:
            if rule.support_sizes is not None and str(size) not in {
                str(wanted) for wanted in rule.support_sizes
            }:
                continue
            cells.append((str(scenario), str(size)))
    return sorted(
        cells, key=lambda cell: (cell[0], int(cell[1]) if cell[1].isdigit() else 1 << 30, cell[1])
    )


def _improvement(metric: str, value: float, reference: float) -> float:
    """How much better ``value`` is than ``reference`` (positive = better)."""
    return reference - value if lower_is_better(metric) else value - reference


def _pairs(
    cells: Sequence[tuple[str, str]],
    mode: str,
    value_of: Any,
    reference_of: Any,
) -> Iterable[tuple[str, str, float | None, float | None]]:
    if mode == "each":
        for scenario, size in cells:
            yield scenario, size, value_of(scenario, size), reference_of(scenario, size)
        return
    values = [value_of(s, z) for s, z in cells]
    references = [reference_of(s, z) for s, z in cells]
    value = None if not values or None in values else sum(values) / len(values)
    reference = None
    if references and None not in references:
        reference = sum(references) / len(references)
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

    Returns:
        The decision; ``accepted`` only when every check passed.
    """
    checks: list[GateCheck] = []
    notes = list(notes)
    has_cells = any(by_size for by_size in candidate_metrics.values())
    if not has_cells:
        checks.append(
            GateCheck(
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
        )

    def candidate(metric: str) -> Any:
        return lambda s, z: _get(candidate_metrics, s, z, candidate_method, metric)

    for rule in policy.absolute:
        cells = _cells(candidate_metrics, rule)
        for scenario, size, value, _ in _pairs(
            cells, rule.cells, candidate(rule.metric), lambda s, z: 0.0
        ):
            passed = value is not None
            details = []
            if value is None:
                details.append(f"{rule.metric} of {candidate_method} missing")
            if value is not None and rule.max is not None and value > rule.max:
                passed = False
                details.append(f"{value:.4f} > max {rule.max:g}")
            if value is not None and rule.min is not None and value < rule.min:
                passed = False
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
                    passed=passed,
                    detail="; ".join(details) or "within bounds",
                )
            )
        if not cells:
            checks.append(_no_cells(rule.label(), "absolute", rule.metric))

    for rule in policy.margins:
        cells = _cells(candidate_metrics, rule)
        baseline = rule.over
        for scenario, size, value, reference in _pairs(
            cells,
            rule.cells,
            candidate(rule.metric),
            lambda s, z, m=rule.metric, b=baseline: _get(candidate_metrics, s, z, b, m),
        ):
            checks.append(
                _compare(
                    label=rule.label(),
                    kind="margin",
                    scenario=scenario,
                    size=size,
                    metric=rule.metric,
                    value=value,
                    reference=reference,
                    reference_name=baseline,
                    relative=rule.relative,
                    passes=lambda gain, t=rule.min_improvement: gain >= t - 1e-12,
                    threshold=rule.min_improvement,
                    verb="improvement",
                )
            )
        if not cells:
            checks.append(_no_cells(rule.label(), "margin", rule.metric))

    if production_version is None or production_metrics is None:
        if policy.regression:
            notes.append("no production version: regression rules not applied")
    else:
        if not same_users:
            checks.append(
                GateCheck(
                    rule="comparability: production compared on the candidate's held-out users",
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
                    detail=f"production's numbers ({comparison_basis}) are not on the same "
                    "held-out users: pass the candidate's training set (`metarec gate "
                    "--training-set`) to re-evaluate production on them",
                )
            )
        prod_method = production_method or candidate_method
        for rule in policy.regression:
            cells = _cells(candidate_metrics, rule)
            for scenario, size, value, reference in _pairs(
                cells,
                rule.cells,
                candidate(rule.metric),
                lambda s, z, m=rule.metric: _get(production_metrics, s, z, prod_method, m),
            ):
                checks.append(
                    _compare(
                        label=rule.label(),
                        kind="regression",
                        scenario=scenario,
                        size=size,
                        metric=rule.metric,
                        value=value,
                        reference=reference,
                        reference_name=f"production v{production_version}",
                        relative=rule.relative,
                        passes=lambda gain, t=rule.max_regression: -gain <= t + 1e-12,
                        threshold=rule.max_regression,
                        verb="regression",
                    )
                )
            if not cells:
                checks.append(_no_cells(rule.label(), "regression", rule.metric))

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
    )


def _no_cells(label: str, kind: Any, metric: str) -> GateCheck:
    return GateCheck(
        rule=label,
        kind=kind,
        scenario="-",
        support_size="-",
        metric=metric,
        value=None,
        reference=None,
        reference_name=None,
        threshold=None,
        observed=None,
        passed=False,
        detail="no evaluated (scenario, support size) cell matches this rule",
    )


def _compare(
    *,
    label: str,
    kind: Any,
    scenario: str,
    size: str,
    metric: str,
    value: float | None,
    reference: float | None,
    reference_name: str,
    relative: bool,
    passes: Any,
    threshold: float,
    verb: str,
) -> GateCheck:
    if value is None or reference is None:
        missing = "candidate" if value is None else reference_name
        return GateCheck(
            rule=label,
            kind=kind,
            scenario=scenario,
            support_size=size,
            metric=metric,
            value=value,
            reference=reference,
            reference_name=reference_name,
            threshold=threshold,
            observed=None,
            passed=False,
            detail=f"{metric} of {missing} missing: cannot compare",
        )
    gain = _improvement(metric, value, reference)
    if relative and reference:  # a zero reference keeps the absolute difference
        gain = gain / abs(reference)
    observed = gain if verb == "improvement" else -gain
    passed = bool(passes(gain))
    return GateCheck(
        rule=label,
        kind=kind,
        scenario=scenario,
        support_size=size,
        metric=metric,
        value=value,
        reference=reference,
        reference_name=reference_name,
        threshold=threshold,
        observed=observed,
        passed=passed,
        detail=f"{verb} {observed:+.4f} vs {reference_name} "
        f"({'met' if passed else 'broken'}, limit {threshold:g})",
    )

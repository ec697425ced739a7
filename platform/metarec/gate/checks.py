"""The gate's checks: the numbers a rule reads, the cells it selects, and one check row per cell.

A card holds two tables, and every rule reads one of them:

* ``rating``: ``metrics[scenario][support_size][method][metric]`` (rating prediction);
* ``ranking``: ``ranking[scenario][cell][method][metric]`` (whole-catalogue top-N of a new user,
  cells ``<order>@<K>``).

A version trained on implicit events (card ``label == "event"``) has no rating table: its rating
rules, and the rules that compare it with a production of the other kind, are *skipped* checks
(:func:`skipped_check`): reported with the reason, never failing, never accepting on their own.

:func:`rule_checks` applies any rule (absolute, margin or regression) the same way: select the
cells, pair the candidate's value with the rule's reference in each cell (or their means), and let
the rule judge each pair. Nothing here reads files, databases or clocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from metarec.gate.paired import PerUser, select_users
from metarec.gate.rules import RegressionRule, Rule, Table
from metarec.training.model_card import Label

# metrics[scenario][support_size][method][metric] -> value (the model card's `metrics`).
Metrics = Mapping[str, Mapping[Any, Mapping[str, Mapping[str, float]]]]
# ranking[scenario][cell][method][metric] -> value (the model card's `ranking`); cells are
# "<order>@<K>", e.g. "random@10".
RankingMetrics = Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]

CheckKind = Literal["absolute", "margin", "regression", "comparability", "coverage", "verification"]
ValueOf = Callable[[str, str], float | None]

NO_RANKING = (
    "the card has no ranking metrics; retrain with this MetaRec (its training run evaluates the "
    "served ranker and the baselines on the whole catalogue into card['ranking']), then gate again"
)
EVENT_SKIPPED = "skipped: the model learnt from implicit events and predicts no ratings"
RANKING_RULE_EXAMPLE = (
    "`- {table: ranking, metric: ndcg@20, over: popularity, min_improvement: 0.0, cells: mean}`"
)
KIND_NAMES: dict[str, str] = {"rating": "ratings", "event": "implicit events"}


class GateCheck(BaseModel):
    """One rule applied to one cell (or to the mean of cells).

    For ranking rules (``table == "ranking"``) ``support_size`` holds the ranking cell, e.g.
    ``random@10``. A skipped check (``skipped``: the rule does not apply to this candidate, e.g.
    a rating rule for a version trained on implicit events) has ``passed`` True, so it never
    blocks, and ``detail`` says why it was skipped; it does not count as a check that passed.
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
    skipped: bool = False


@dataclass(frozen=True)
class Numbers:
    """One table of the evaluation: the candidate's (with its baselines) and production's."""

    table: Table
    candidate: Metrics
    method: str
    production: Metrics | None
    production_method: str
    same_users: bool
    basis: str
    paired: PerUser | None = None  # per-user values of both versions (regression rules)

    def value(self, scenario: str, cell: str, method: str, metric: str) -> float | None:
        """The candidate evaluation's ``metric`` of ``method`` in one cell (None: missing)."""
        return _get(self.candidate, scenario, cell, method, metric)

    def production_value(self, scenario: str, cell: str, metric: str) -> float | None:
        """Production's ``metric`` in one cell (None: missing or no production)."""
        return _get(self.production, scenario, cell, self.production_method, metric)

    def has_production(self) -> bool:
        """Whether production's table has any cell."""
        return has_cells(self.production)


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


def has_cells(metrics: Metrics | None) -> bool:
    """Whether a table has at least one (scenario, cell)."""
    return bool(metrics) and any(by_cell for by_cell in metrics.values())


def _cell_order(cell: tuple[str, str]) -> tuple[Any, ...]:
    """Sort key: scenario, then support sizes (``all`` last) or ranking cells (order, K)."""
    scenario, name = cell
    order, _, k = name.partition("@")
    if k.isdigit():
        return (scenario, 1, order, int(k), name)
    return (scenario, 0, "", int(name) if name.isdigit() else 1 << 30, name)


def select(
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
) -> Iterable[tuple[str, str, float | None, float | None, list[tuple[str, str]]]]:
    """Per checked group (one cell, or every cell for a mean): value, reference and its cells."""
    if mode == "each":
        for scenario, size in cells:
            yield (
                scenario,
                size,
                value_of(scenario, size),
                reference_of(scenario, size),
                [(scenario, size)],
            )
        return
    value = _mean([value_of(s, z) for s, z in cells])
    reference = _mean([reference_of(s, z) for s, z in cells])
    yield "mean", f"{len(cells)} cells", value, reference, list(cells)


def rule_checks(rule: Rule, numbers: Numbers, *, production: str) -> list[GateCheck]:
    """Apply one rule of any type to its table: a check per selected cell, or one for the mean.

    Args:
        rule: The rule.
        numbers: The table the rule reads (``rule.table``).
        production: Production's name in the checks, e.g. ``production v3`` (regression rules).

    Returns:
        The checks; a single failed one when the rule selects no cell or cannot be applied.
    """
    cells = select(
        numbers.candidate,
        scenarios=rule.scenarios,
        names=rule.support_sizes if rule.table == "rating" else rule.ranking_cells,
    )
    if not cells:
        return [_unmatched(rule, numbers)]
    name = rule.reference_name(production)
    reason = rule.unavailable(numbers, production)
    if reason is not None:
        return [failed(rule, reason, reference_name=name)]
    checks = []
    for scenario, cell, value, reference, group in _pairs(
        cells,
        rule.cells,
        lambda s, c: numbers.value(s, c, numbers.method, rule.metric),
        lambda s, c: rule.reference(numbers, s, c),
    ):
        judged = (
            rule.judge(
                value,
                reference,
                method=numbers.method,
                reference_name=str(name),
                paired=select_users(numbers.paired or {}, group, rule.metric),
            )
            if isinstance(rule, RegressionRule)
            else rule.judge(value, reference, method=numbers.method, reference_name=str(name))
        )
        checks.append(
            GateCheck(
                rule=rule.label(),
                kind=rule.kind,
                scenario=scenario,
                support_size=cell,
                metric=rule.metric,
                value=value,
                reference=reference,
                reference_name=name,
                threshold=rule.threshold,
                observed=judged.observed,
                passed=judged.passed,
                detail=judged.detail,
                table=rule.table,
            )
        )
    return checks


def _overall(
    rule: str,
    kind: CheckKind,
    *,
    passed: bool,
    detail: str,
    metric: str = "-",
    reference_name: str | None = None,
    table: Table = "rating",
    skipped: bool = False,
) -> GateCheck:
    """A check of the whole evaluation, not of one cell: no value, reference or threshold."""
    return GateCheck(
        rule=rule,
        kind=kind,
        scenario="-",
        support_size="-",
        metric=metric,
        value=None,
        reference=None,
        reference_name=reference_name,
        threshold=None,
        observed=None,
        passed=passed,
        detail=detail,
        table=table,
        skipped=skipped,
    )


def failed(rule: Rule, detail: str, *, reference_name: str | None = None) -> GateCheck:
    """A rule that could not be evaluated at all (fails closed)."""
    return _overall(
        rule.label(),
        rule.kind,
        passed=False,
        detail=detail,
        metric=rule.metric,
        reference_name=reference_name,
        table=rule.table,
    )


def skipped_check(rule: Rule, note: str, *, reference_name: str | None = None) -> GateCheck:
    """A rule that does not apply to this candidate: reported with ``note``, never failing."""
    return _overall(
        rule.label(),
        rule.kind,
        passed=True,
        detail=note,
        metric=rule.metric,
        reference_name=reference_name,
        table=rule.table,
        skipped=True,
    )


def kinds_skipped(production: str, production_label: Label, candidate_label: Label) -> str:
    """The note of a production comparison skipped because the two versions differ in kind."""
    return (
        f"skipped: {production} learnt from {KIND_NAMES[production_label]} and the candidate "
        f"from {KIND_NAMES[candidate_label]}: different training data, so their numbers are not "
        "comparable"
    )


def no_ranking_rule_check(*, policy_has_ranking_rule: bool) -> GateCheck:
    """The failed check of an event candidate that no ranking rule judges (no vacuous pass)."""
    if policy_has_ranking_rule:
        problem = (
            "no ranking rule of the policy applies (its ranking rules compare with a production "
            "version, and there is none of the same kind)"
        )
    else:
        problem = "the policy has no ranking rule"
    return _overall(
        "coverage: a ranking rule judges a version trained on implicit events",
        "coverage",
        passed=False,
        detail=f"{problem}, and this version learnt from implicit events (no rating metrics, "
        f"its rating rules are skipped): add an absolute or margin rule on the ranking table "
        f"to the policy, e.g. under `margins:` {RANKING_RULE_EXAMPLE}",
        table="ranking",
    )


def _unmatched(rule: Rule, numbers: Numbers) -> GateCheck:
    """The failed check of a rule that matches no cell of the candidate's table."""
    if numbers.table == "ranking" and not has_cells(numbers.candidate):
        return failed(rule, NO_RANKING)
    what = "support size" if numbers.table == "rating" else "ranking cell"
    return failed(rule, f"no evaluated (scenario, {what}) cell matches this rule")


def coverage_check() -> GateCheck:
    """The failed check of a card without rating metrics."""
    return _overall(
        "coverage: the card has evaluation metrics",
        "coverage",
        passed=False,
        detail="the model card has no metrics: evaluate the candidate before gating",
    )


def comparability_checks(
    tables: Sequence[Numbers], *, require_same_users: bool, production: str
) -> list[GateCheck]:
    """A comparability check per table whose production numbers are on other users.

    Each fails unless the policy drops ``require_same_users``. The caller passes the tables whose
    production numbers count (rating always, as before ranking existed; ranking only when a
    regression rule reads it and production has ranking numbers).
    """
    checks = []
    for numbers in tables:
        if numbers.same_users:
            continue
        subject, what = (
            ("production's ranking", "production's ranking numbers")
            if numbers.table == "ranking"
            else ("production", "production's numbers")
        )
        checks.append(
            _overall(
                f"comparability: {subject} compared on the candidate's held-out users",
                "comparability",
                passed=not require_same_users,
                detail=f"{what} ({numbers.basis}) are not on the same held-out users: pass "
                "the candidate's training set (`metarec gate --training-set`) to re-evaluate "
                "production on them",
                reference_name=production,
                table=numbers.table,
            )
        )
    return checks

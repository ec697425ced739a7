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

Versions trained on implicit events (``candidate_label``/``production_label`` ``"event"``) have
no rating table: the candidate's rating rules are skipped checks, and it is judged on the ranking
table alone (a policy without a ranking rule that applies rejects it, never passes it vacuously).
A production version of the other kind learnt from other data: every rule that compares with it
is skipped, with a note naming both kinds, and nothing of it is compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from metarec.clock import as_utc
from metarec.gate.checks import (
    EVENT_SKIPPED,
    KIND_NAMES,
    NO_RANKING,
    GateCheck,
    Label,
    Metrics,
    Numbers,
    RankingMetrics,
    comparability_checks,
    coverage_check,
    has_cells,
    kinds_skipped,
    no_ranking_rule_check,
    rule_checks,
    select,
    skipped_check,
)
from metarec.gate.paired import PairedValues, PerUser
from metarec.gate.policy import GatePolicy
from metarec.gate.verification import UNVERIFIED_BASIS, Verification

__all__ = [
    "EVENT_SKIPPED",
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
    candidate_label: Label = Field(
        default="rating",
        description="What the candidate learnt from: `rating` or `event` (implicit events: no "
        "rating metrics, its rating rules are skipped).",
    )
    production_label: Label | None = Field(
        default=None,
        description="What the production version learnt from (None: no production version).",
    )
    metrics_basis: str = Field(
        default=UNVERIFIED_BASIS,
        description="Where the candidate's numbers come from: its card, verified by a "
        "re-evaluation on its held-out users, or unverified (no training set).",
    )

    @property
    def broken(self) -> list[GateCheck]:
        """The checks that failed."""
        return [check for check in self.checks if not check.passed]

    @property
    def skipped(self) -> list[GateCheck]:
        """The checks skipped: rules that do not apply to this candidate (never failing)."""
        return [check for check in self.checks if check.skipped]

    def summary(self) -> str:
        """One line: accepted, or the broken rules."""
        if self.accepted:
            skipped = len(self.skipped)
            passed = len(self.checks) - skipped
            return f"accepted ({passed} checks passed" + (
                f", {skipped} skipped)" if skipped else ")"
            )
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
    candidate_label: Label = "rating",
    production_label: Label | None = None,
    verified: Verification | None = None,
    paired: PairedValues | None = None,
) -> GateDecision:
    """Apply a policy to the numbers: ``accepted`` only when every check passed.

    ``candidate_*``: the card's tables (candidates ``candidate_method``, the policy's
    ``ranking_method``); ``production_*``: production's, on the same users if ``*same_users``,
    as ``*comparison_basis`` says (ranking defaults to rating's); ``*_label``: what each learnt
    from (``event``: no rating table; production's defaults to ``rating``); ``verified``: the
    card re-evaluated (None: unverified); ``paired``: per-user values (paired regressions).
    Naive ``decided_at`` is UTC. One check must not be skipped to accept.
    """
    rating = Numbers(
        table="rating",
        candidate=candidate_metrics,
        method=candidate_method,
        production=production_metrics,
        production_method=production_method or candidate_method,
        same_users=same_users,
        basis=comparison_basis,
        paired=paired.rating if paired else None,
    )
    return _decision(
        policy,
        rating,
        _ranking_numbers(
            policy,
            (candidate_ranking, production_ranking, paired.ranking if paired else None),
            same_users=same_users if ranking_same_users is None else ranking_same_users,
            basis=ranking_comparison_basis or comparison_basis,
        ),
        _kinds(candidate_label, production_label, production_version, production_metrics),
        model=model,
        artifact_digest=artifact_digest,
        production_version=production_version,
        production_method=production_method,
        notes=notes,
        decided_at=decided_at,
        verified=verified or Verification(checks=[], notes=[]),
    )


@dataclass(frozen=True)
class _Kinds:
    """What the candidate and production (None: none) learnt from: ratings or implicit events."""

    candidate: Label
    production: Label | None

    @property
    def event(self) -> bool:
        """Whether the candidate learnt from implicit events (it has no rating table)."""
        return self.candidate == "event"

    @property
    def has_production(self) -> bool:
        """Whether a production version is compared with (its kind is known)."""
        return self.production is not None

    @property
    def comparable(self) -> bool:
        """Whether production learnt from the same kind of data (False: no production)."""
        return self.production == self.candidate


def _kinds(
    candidate: Label,
    production: Label | None,
    production_version: int | None,
    production_metrics: Metrics | None,
) -> _Kinds:
    """What each version learnt from; production's kind is None when there is no production.

    A production version counts when it is named and has rating metrics or a declared kind
    (an undeclared kind is ``rating``).
    """
    has_production = production_version is not None and (
        production_metrics is not None or production is not None
    )
    return _Kinds(
        candidate=candidate, production=(production or "rating") if has_production else None
    )


def _decision(
    policy: GatePolicy,
    rating: Numbers,
    ranking: Numbers,
    kinds: _Kinds,
    *,
    model: str,
    artifact_digest: str,
    production_version: int | None,
    production_method: str | None,
    notes: Sequence[str],
    decided_at: datetime,
    verified: Verification,
) -> GateDecision:
    """Run every check on both tables and record the verdict with its inputs."""
    compared_version = production_version if kinds.has_production else None
    checks = [*verified.checks, *_checks(policy, rating, ranking, compared_version, kinds=kinds)]
    return GateDecision(
        accepted=_accepted(checks),
        model=model,
        artifact_digest=artifact_digest,
        candidate_method=rating.method,
        policy_name=policy.name,
        policy_digest=policy.digest(),
        production_version=production_version,
        production_method=production_method,
        comparison_basis=rating.basis,
        checks=checks,
        notes=_notes(policy, notes, production_version, kinds),
        decided_at=as_utc(decided_at),
        candidate_label=kinds.candidate,
        production_label=kinds.production,
        metrics_basis=verified.basis,
        **_ranking_fields(ranking, compared=kinds.comparable),
    )


def _accepted(checks: Sequence[GateCheck]) -> bool:
    """Whether every check passed and at least one was not skipped."""
    return any(not check.skipped for check in checks) and all(check.passed for check in checks)


def _notes(
    policy: GatePolicy, notes: Sequence[str], production_version: int | None, kinds: _Kinds
) -> list[str]:
    """The caller's notes, then why production was not compared, if it was not."""
    if not kinds.has_production:
        return [*notes, NO_PRODUCTION] if policy.regression else [*notes]
    if not kinds.comparable:
        return [*notes, _kinds_note(production_version, kinds)]
    return [*notes]


def _kinds_note(production_version: int | None, kinds: _Kinds) -> str:
    """The decision's note when production learnt from the other kind of data."""
    return (
        f"production v{production_version} learnt from {KIND_NAMES[kinds.production or 'rating']}"
        f" and the candidate from {KIND_NAMES[kinds.candidate]}: the rules comparing with "
        "production are skipped and production was not evaluated"
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
    tables: tuple[RankingMetrics | None, RankingMetrics | None, PerUser | None],
    *,
    same_users: bool,
    basis: str,
) -> Numbers:
    """The ranking table: the policy's ``ranking_method`` is the candidate, and production's.

    ``tables``: the candidate's ranking table, production's and both versions' per-user values.
    """
    candidate, production, paired = tables
    return Numbers(
        table="ranking",
        candidate=candidate or {},
        method=policy.ranking_method,
        production=production,
        production_method=policy.ranking_method,
        same_users=same_users,
        basis=basis,
        paired=paired,
    )


def _checks(
    policy: GatePolicy,
    rating: Numbers,
    ranking: Numbers,
    production_version: int | None,
    *,
    kinds: _Kinds,
) -> list[GateCheck]:
    """Every rule's checks, in one loop over the policy's typed rules.

    The order is the stored decisions': coverage, absolute and margin rules, then (with a
    production version) the comparability checks and the regression rules. An event
    candidate's rating rules, and the regression rules against a production of the other kind,
    are skipped checks.
    """
    tables = {"rating": rating, "ranking": ranking}
    production = f"production v{production_version}"
    own: list[GateCheck] = [] if kinds.event or has_cells(rating.candidate) else [coverage_check()]
    against_production: list[GateCheck] = []
    for rule in policy.rules():
        regression = rule.kind == "regression"
        if regression and production_version is None:
            continue
        name = rule.reference_name(production)
        if kinds.event and rule.table == "rating":
            checks = [skipped_check(rule, EVENT_SKIPPED, reference_name=name)]
        elif regression and not kinds.comparable:
            note = kinds_skipped(production, kinds.production or "rating", kinds.candidate)
            checks = [skipped_check(rule, note, reference_name=name)]
        else:
            checks = rule_checks(rule, tables[rule.table], production=production)
        (against_production if regression else own).extend(checks)
    if kinds.event and not any(
        check.table == "ranking" and not check.skipped for check in [*own, *against_production]
    ):
        has_rule = any(rule.table == "ranking" for rule in policy.rules())
        own.append(no_ranking_rule_check(policy_has_ranking_rule=has_rule))
    if production_version is None:
        return own
    compared = [rating] if kinds.comparable and not kinds.event else []
    if kinds.comparable and policy.compares_production("ranking") and ranking.has_production():
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

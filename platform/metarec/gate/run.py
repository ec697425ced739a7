"""Run the gate on an artifact folder: read its card, find production, decide.

Production's numbers must be on the candidate's held-out users. The card holds two tables, the
rating metrics (``metrics``) and the whole-catalogue ranking metrics (``ranking``), and each may
be re-evaluated for production by an injected function:

* ``evaluate(artifact_dir, users) -> metrics`` re-evaluates production's rating metrics;
* ``evaluate_ranking(artifact_dir, users) -> ranking`` re-evaluates production's ranking table
  (called only when a regression rule reads the ranking table and the candidate has one).

Without one, production's stored card numbers of that table are used, and the decision records
whether they were computed on the same users.

A version trained on implicit events (card ``label == "event"``) has no rating table: production
is never re-evaluated with ``evaluate`` for an event candidate, and a production version of the
other kind (one learnt from ratings, the other from events) is not evaluated at all: its
comparisons are skipped by the decision.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from metarec.clock import utc_now
from metarec.gate.checks import KIND_NAMES, Label
from metarec.gate.decision import GateDecision, decide
from metarec.gate.evaluators import (
    Evaluator,
    RankingEvaluator,
    training_set_evaluator,
    training_set_ranking_evaluator,
)
from metarec.gate.methods import candidate_method, production_method
from metarec.gate.pairing import PairedEvaluator, paired_request
from metarec.gate.policy import GatePolicy
from metarec.gate.verification import DEFAULT_TOLERANCE, Reevaluation, verify_card
from metarec.registry.artifacts import inspect_artifact
from metarec.registry.service import Registry
from metarec.registry.types import VersionInfo, VersionRef

if TYPE_CHECKING:
    from metarec.training.model_card import ModelCard

__all__ = [
    "Evaluator",
    "RankingEvaluator",
    "gate_artifact",
    "training_set_evaluator",
    "training_set_ranking_evaluator",
]

_T = TypeVar("_T")


@dataclass(frozen=True)
class _ProductionNumbers:
    """One table of production's numbers and how they were obtained."""

    numbers: Mapping[str, Any] | None
    basis: str
    same_users: bool


def gate_artifact(
    artifact_dir: Path,
    *,
    policy: GatePolicy,
    model: str,
    registry: Registry | None = None,
    evaluate: Evaluator | None = None,
    evaluate_ranking: RankingEvaluator | None = None,
    decided_at: datetime | None = None,
    reevaluation: Reevaluation | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    evaluate_paired: PairedEvaluator | None = None,
) -> GateDecision:
    """Decide whether the artifact may be registered.

    Args:
        artifact_dir: Candidate folder (``model.safetensors`` + ``model_card.json``).
        policy: The gate policy.
        model: The registered model the candidate would become a version of.
        registry: Where to find the current production version (None: no comparison).
        evaluate: Re-evaluates production's rating metrics on the candidate's held-out users
            (None: its stored card metrics); never for an event candidate (no rating metrics).
        evaluate_ranking: Re-evaluates production's ranking table on them (None: its stored
            ``card["ranking"]``). Neither is called for a production of the other kind.
        decided_at: The decision's time (default: now, in UTC).
        reevaluation: The candidate's training set and evaluators: the card's numbers are
            re-evaluated on its held-out users and a mismatch beyond ``tolerance`` rejects it
            (None: they are taken from the card, and the decision says so).
        tolerance: The largest difference accepted between a card number and its re-evaluation.
        evaluate_paired: Pairs both versions per user for the regression rules (default:
            ``reevaluation``'s; none without one: they judge the mean difference).

    Returns:
        The decision (not stored: :meth:`Registry.register` stores it with the version, and
        :meth:`Registry.record_rejection` records a rejection in the ledger).
    """
    manifest = inspect_artifact(Path(artifact_dir))
    card = manifest.card
    method = candidate_method(policy, card)
    verified = verify_card(
        Path(artifact_dir), card, reevaluation, policy=policy, method=method, tolerance=tolerance
    )
    unnamed = [] if method else ["the card names no algorithm and the policy no method"]
    paired = evaluate_paired or (reevaluation.paired_evaluator() if reevaluation else None)
    candidate = _Candidate(Path(artifact_dir), card, method)
    evaluators = (evaluate, evaluate_ranking, paired)
    production = _production_side(registry, model, candidate, policy, evaluators)
    return decide(
        policy,
        model=model,
        artifact_digest=manifest.digest,
        candidate_metrics=card.metrics,
        candidate_method=method,
        candidate_ranking=card.ranking,
        candidate_label=card.label,
        notes=[*verified.notes, *unnamed, *production.pop("notes", [])],
        decided_at=decided_at or utc_now(),
        verified=verified,
        **production,
    )


@dataclass(frozen=True)
class _Candidate:
    """The candidate artifact, its card and the rating method it is judged on."""

    folder: Path
    card: ModelCard
    method: str


def _production_side(
    registry: Registry | None,
    model: str,
    candidate: _Candidate,
    policy: GatePolicy,
    evaluators: tuple[Evaluator | None, RankingEvaluator | None, PairedEvaluator | None],
) -> dict[str, Any]:
    """Production's arguments of :func:`decide` ({}: no registry or no production version).

    Production is judged on its own served rating method (a policy's ``method`` wins), and the
    decision's notes say so when it is not the candidate's. With ``evaluate_paired``, both
    versions' per-user values on the candidate's held-out users feed the paired regression test.
    """
    production = registry.production(model) if registry is not None else None
    if production is None or registry is None:
        return {}
    card, method = candidate.card, candidate.method
    evaluate, evaluate_ranking, evaluate_paired = evaluators
    production_card = _card(registry, production)
    judged = production_method(
        policy,
        production_card,
        candidate=method,
        tag=production.tag,
        algorithm=production.lineage.algorithm,
    )
    ranking_needed = bool(card.ranking) and policy.compares_production("ranking")
    compared = _compared(
        registry,
        production,
        card,
        method=judged.production,
        ranking_needed=ranking_needed,
        evaluate=evaluate,
        evaluate_ranking=evaluate_ranking,
    )
    compared["notes"] = [judged.note] if judged.note and compared["production_metrics"] else []
    request = paired_request(
        policy,
        card,
        candidate_method=method,
        production_method=judged.production,
        ranking=ranking_needed,
    )
    if evaluate_paired is not None and request is not None and compared["comparable"]:
        compared["paired"] = _fetched(
            registry,
            production,
            lambda folder: evaluate_paired(candidate.folder, folder, card.test_users, request),
        )
    del compared["comparable"]
    return compared


def _card(registry: Registry, production: VersionInfo) -> ModelCard | None:
    """Production's card (None: a card this MetaRec cannot read, an older format)."""
    if production.lineage.card_error is not None:
        return None
    return registry.read_card(VersionRef(model=production.model, version=production.version))


def _compared(
    registry: Registry,
    production: VersionInfo,
    card: ModelCard,
    *,
    method: str,
    ranking_needed: bool,
    evaluate: Evaluator | None,
    evaluate_ranking: RankingEvaluator | None,
) -> dict[str, Any]:
    """Production's side of :func:`decide`, by what production and the candidate learnt from.

    Production of the same kind as the candidate is compared (its numbers read or
    re-evaluated); of the other kind it is not compared at all.
    """
    production_label = _label(registry, production)
    if production_label != card.label:
        return _not_compared(
            production, method=method, production_label=production_label, candidate=card.label
        )
    compared = _production_inputs(
        registry,
        production,
        card.test_users,
        method=method,
        evaluate=evaluate,
        evaluate_ranking=evaluate_ranking,
        ratings_needed=card.predicts_ratings,
        ranking_needed=ranking_needed,
    )
    compared["production_label"] = production_label
    return compared


def _label(registry: Registry, production: VersionInfo) -> Label:
    """What production learnt from (its card's ``label``).

    A card this MetaRec cannot read (``lineage.card_error``: an older format) predates versions
    trained on implicit events, so it is a rating version.
    """
    if production.lineage.card_error is not None:
        return "rating"
    return registry.read_card(VersionRef(model=production.model, version=production.version)).label


def _not_compared(
    production: VersionInfo, *, method: str, production_label: Label, candidate: Label
) -> dict[str, Any]:
    """Production's side of :func:`decide` when it learnt from the other kind of data.

    Production's numbers are neither read nor evaluated: a rating training set cannot evaluate
    an event version, nor an event training set (it has no ratings) a rating version's rating
    metrics.
    """
    basis = (
        f"not compared: {production.tag} learnt from {KIND_NAMES[production_label]} and the "
        f"candidate from {KIND_NAMES[candidate]}"
    )
    return {
        "production_metrics": None,
        "production_method": method,
        "production_version": production.version,
        "production_label": production_label,
        "comparison_basis": basis,
        "production_ranking": None,
        "ranking_comparison_basis": basis,
        "comparable": False,
    }


def _production_inputs(
    registry: Registry,
    production: VersionInfo,
    test_users: Mapping[str, Any],
    *,
    method: str,
    evaluate: Evaluator | None,
    evaluate_ranking: RankingEvaluator | None,
    ratings_needed: bool,
    ranking_needed: bool,
) -> dict[str, Any]:
    """Production's side of :func:`decide`: both tables, how they were obtained, its version.

    ``ratings_needed`` is False for versions trained on implicit events: they have no rating
    table, so production's is neither read nor evaluated.
    """
    rating = (
        _production_rating(registry, production, test_users, evaluate=evaluate)
        if ratings_needed
        else _ProductionNumbers(
            numbers=None,
            basis="rating metrics not compared (both versions learnt from implicit events)",
            same_users=True,
        )
    )
    ranking = _production_ranking(
        registry,
        production,
        test_users,
        evaluate_ranking=evaluate_ranking,
        needed=ranking_needed,
    )
    return {
        "production_metrics": rating.numbers,
        "production_method": method,
        "production_version": production.version,
        "comparison_basis": rating.basis,
        "same_users": rating.same_users,
        "production_ranking": ranking.numbers,
        "ranking_comparison_basis": ranking.basis,
        "ranking_same_users": ranking.same_users,
        "comparable": True,
    }


def _same_users(production: VersionInfo, test_users: Mapping[str, Any]) -> bool:
    return bool(test_users) and production.lineage.test_users == test_users


def _re_evaluated(
    registry: Registry,
    production: VersionInfo,
    test_users: Mapping[str, Any],
    evaluate: Evaluator | RankingEvaluator,
) -> Mapping[str, Any]:
    """Production's verified artifact, evaluated on the candidate's held-out users."""
    return _fetched(registry, production, lambda folder: evaluate(folder, test_users))


def _fetched(registry: Registry, production: VersionInfo, use: Callable[[Path], _T]) -> _T:
    """``use`` applied to production's verified artifact, fetched into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="metarec-production-") as tmp:
        folder = registry.fetch(
            VersionRef(model=production.model, version=production.version),
            Path(tmp) / "artifact",
        )
        return use(folder)


def _production_rating(
    registry: Registry,
    production: VersionInfo,
    test_users: Mapping[str, Any],
    *,
    evaluate: Evaluator | None,
) -> _ProductionNumbers:
    if evaluate is not None:
        return _ProductionNumbers(
            numbers=_re_evaluated(registry, production, test_users, evaluate),
            basis=f"{production.tag} re-evaluated on the candidate's held-out users",
            same_users=True,
        )
    same = _same_users(production, test_users)
    return _ProductionNumbers(
        numbers=production.lineage.metrics,
        basis=f"{production.tag}'s stored metrics "
        f"({'same' if same else 'different'} held-out users)",
        same_users=same,
    )


def _production_ranking(
    registry: Registry,
    production: VersionInfo,
    test_users: Mapping[str, Any],
    *,
    evaluate_ranking: RankingEvaluator | None,
    needed: bool,
) -> _ProductionNumbers:
    """Production's ranking table: re-evaluated, stored, or not looked up when not ``needed``.

    It is not needed without a ranking regression rule, nor when the candidate has no ranking
    table (its ranking rules fail anyway).
    """
    if not needed:
        return _ProductionNumbers(
            numbers=None,
            basis="production's ranking not compared (no ranking regression rule, or the "
            "candidate has no ranking table)",
            same_users=True,
        )
    if evaluate_ranking is not None:
        return _ProductionNumbers(
            numbers=_re_evaluated(registry, production, test_users, evaluate_ranking),
            basis=f"{production.tag}'s ranking re-evaluated on the candidate's held-out users",
            same_users=True,
        )
    same = _same_users(production, test_users)
    return _ProductionNumbers(
        numbers=_stored_ranking(registry, production),
        basis=f"{production.tag}'s stored ranking metrics "
        f"({'same' if same else 'different'} held-out users)",
        same_users=same,
    )


def _stored_ranking(registry: Registry, production: VersionInfo) -> Mapping[str, Any]:
    """``ranking`` of production's registered card (checksum-verified, typed); {} if none."""
    ref = VersionRef(model=production.model, version=production.version)
    return registry.read_card(ref).ranking

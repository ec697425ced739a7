"""How the gate obtains both versions' per-user values for its paired regression test.

A ``PairedEvaluator`` evaluates the candidate and production's artifact on the same held-out
users (and supports) and returns their per-user values (:class:`PairedValues`). The one MetaRec
uses evaluates both on the candidate's training set (:mod:`metarec.gate.per_user`, imported
when it runs, so building one is cheap). Which metrics and cells it pairs follows the policy's
regression rules (:func:`paired_request`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from metarec.gate.paired import PairedRequest, PairedValues

if TYPE_CHECKING:
    from metarec.features.training_set import Location
    from metarec.gate.policy import GatePolicy
    from metarec.training.model_card import ModelCard

# Metrics with per-user values: per table, whether a metric name is paired.
_RATING_PAIRED = ("mae", "ndcg@")
RANKING_PAIRED = "ndcg@20"


class PairedEvaluator(Protocol):
    """Evaluates both versions on the same users: their per-user values."""

    def __call__(
        self,
        candidate_dir: Path,
        production_dir: Path,
        users: Mapping[str, Any],
        request: PairedRequest,
    ) -> PairedValues:
        """Per-user values of the candidate and production on ``users``."""
        ...


def training_set_paired_evaluator(
    training_set: Location, *, device: str = "cpu"
) -> PairedEvaluator:
    """Pairs both versions on the candidate's training set (its split, seed and supports).

    Args:
        training_set: The candidate's training set (path or URI).
        device: Where the rating models run.

    Returns:
        ``evaluate_paired(candidate_dir, production_dir, users, request)`` for the gate.
    """

    def evaluate(
        candidate_dir: Path,
        production_dir: Path,
        users: Mapping[str, Any],
        request: PairedRequest,
    ) -> PairedValues:
        from metarec.gate.per_user import paired_values

        return paired_values(
            candidate_dir, production_dir, training_set, users, request, device=device
        )

    return evaluate


def paired_request(
    policy: GatePolicy,
    card: ModelCard,
    *,
    candidate_method: str,
    production_method: str,
    ranking: bool,
) -> PairedRequest | None:
    """What the policy's regression rules need paired (None: nothing has per-user values).

    Args:
        policy: The gate policy.
        card: The candidate's card (its tables' scenarios and cells are paired).
        candidate_method: The candidate's judged rating method.
        production_method: Production's judged rating method.
        ranking: Whether production's ranking is compared (a ranking regression rule applies).
    """
    rating_metrics = tuple(
        sorted(
            {
                rule.metric.lower()
                for rule in policy.regression
                if rule.table == "rating" and rule.metric.lower().startswith(_RATING_PAIRED)
            }
        )
    )
    if not card.predicts_ratings:
        rating_metrics = ()
    wants_ranking = ranking and any(
        rule.table == "ranking" and rule.metric.lower() == RANKING_PAIRED
        for rule in policy.regression
    )
    # The card's order: the K = 0 cell is named after the first support order (``time@0``).
    cells = list(dict.fromkeys(str(c) for by_cell in card.ranking.values() for c in by_cell))
    if not rating_metrics and not (wants_ranking and cells):
        return None
    return PairedRequest(
        candidate_method=candidate_method if rating_metrics else None,
        production_method=production_method if rating_metrics else None,
        rating_metrics=rating_metrics,
        support_sizes=tuple(sorted({str(s) for by in card.metrics.values() for s in by})),
        ranking_method=policy.ranking_method,
        ranking_cells=tuple(cells) if wants_ranking else (),
        scenarios=tuple(sorted({*card.metrics, *card.ranking})),
    )

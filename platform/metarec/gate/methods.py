"""Which rating method of each version the gate judges: the one its service serves.

``/predict`` serves a version's factor fold-in (``factor_map``) when its artifact has one, else
its meta-learned algorithm (:func:`metarec.training.served_method.served_rating_method`, shared
with the service). The gate judges the candidate on that method and compares it with
production's own served method on the same users; a policy's explicit ``method`` wins for both
(production keeps its served method when it has no such model, and the decision says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from metarec.training.served_method import FACTOR_MAP, served_rating_method

if TYPE_CHECKING:
    from metarec.gate.policy import GatePolicy
    from metarec.training.model_card import ModelCard


@dataclass(frozen=True)
class JudgedMethods:
    """The rating method judged for production, and the decision's note about it (or None)."""

    production: str
    note: str | None


def candidate_method(policy: GatePolicy, card: ModelCard) -> str:
    """The candidate's judged rating method: the policy's, else the one the service serves."""
    return policy.method or served_rating_method(card) or card.algorithm


def production_method(
    policy: GatePolicy,
    card: ModelCard | None,
    *,
    candidate: str,
    tag: str,
    algorithm: str | None,
) -> JudgedMethods:
    """Production's judged rating method, and why it differs from the candidate's (if it does).

    Args:
        policy: The gate policy (its ``method``, when set, is judged for both versions).
        card: Production's model card (None: a card this MetaRec cannot read, an older format).
        candidate: The candidate's judged method.
        tag: Production's name in the note, e.g. ``metarec:v1``.
        algorithm: Production's algorithm as the registry records it (for an unreadable card).

    Returns:
        Production's method and the note (None when both are judged on the same method).
    """
    served = (served_rating_method(card) or card.algorithm) if card else (algorithm or candidate)
    has_factor = card is not None and card.factor_model is not None
    method = served
    if policy.method and not (policy.method == FACTOR_MAP and not has_factor):
        method = policy.method
    if method == candidate:
        return JudgedMethods(production=method, note=None)
    why = "" if has_factor else f" ({tag} has no factor model: an older version)"
    return JudgedMethods(
        production=method,
        note=f"each version is judged on its own served rating method: the candidate on "
        f"{candidate}, {tag} on {method}{why}",
    )

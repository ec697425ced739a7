"""Which method of a model card answers ``/predict``: the one rating method that is served.

An artifact with a meta-learned factor fold-in (``card.factor_model``) serves its ratings with
it (method ``factor_map`` of the card's evaluation); one without serves them with the card's
meta-learned algorithm (e.g. ``maml``); a version trained on implicit events serves no ratings.
The service (:mod:`metarec.serving.loading`) and the evaluation gate (:mod:`metarec.gate.run`)
both read it here, so the gate judges the model ``/predict`` serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metarec.training.model_card import ModelCard

# The name of the factor fold-in in the evaluation tables (``metarec.training.methods``).
FACTOR_MAP = "factor_map"


def served_rating_method(card: ModelCard) -> str | None:
    """The rating method the service serves for ``card``.

    Args:
        card: A version's model card.

    Returns:
        ``factor_map`` when the card has a factor fold-in, else the card's algorithm; None for
        a version trained on implicit events (it predicts no ratings).
    """
    if not card.predicts_ratings:
        return None
    return FACTOR_MAP if card.factor_model is not None else card.algorithm

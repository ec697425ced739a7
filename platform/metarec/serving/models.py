"""The served version's models, ready to adapt: its rating model and its ranker.

A version has a rating model (the artifact's factor fold-in when it has one, else MeLU's batched
adaptation), a ranker (:class:`~.ranking.CatalogueRanker`), or both; a version trained on
implicit events has the ranker alone.
"""

from __future__ import annotations

from metarec.errors import ServingModelError
from metarec.serving.adapter import BatchedAdapter
from metarec.serving.factor_adapter import FactorAdapter
from metarec.serving.loading import ServedModel
from metarec.serving.ranking import CatalogueRanker


def rating_model(served: ServedModel) -> BatchedAdapter | FactorAdapter | None:
    """The rating model: the factor fold-in when the artifact has one, else MeLU's.

    None for a version trained on implicit events.
    """
    if served.adapted is None:
        return None
    if served.factor is None:
        return BatchedAdapter(served.adapted)
    return FactorAdapter(served.factor, served.encoder)


def catalogue_ranker(served: ServedModel) -> CatalogueRanker | None:
    """The served ranker, configured from the card (None: the version has none)."""
    if served.ranker is None or served.card.ranker is None:
        return None
    return CatalogueRanker(
        served.ranker,
        encoder=served.encoder,
        steps=int(served.card.ranker["inner_steps"]),
        blend_weight=float(served.card.ranker["blend_weight"]),
    )


def served_models(
    served: ServedModel,
) -> tuple[BatchedAdapter | FactorAdapter | None, CatalogueRanker | None]:
    """The version's rating model and ranker (either may be None, not both).

    Raises:
        ServingModelError: The version has neither.
    """
    adapter = rating_model(served)
    ranker = catalogue_ranker(served)
    if adapter is None and ranker is None:
        raise ServingModelError(
            f"Version {served.tag} has neither a rating model nor a ranker.",
            fix="serve a version trained with `metarec train`.",
        )
    return adapter, ranker

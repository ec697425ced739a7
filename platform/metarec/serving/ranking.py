"""``/recommend``'s ranking: the served ranker of a version, over the online item matrix.

The same computation as offline evaluation (:class:`metarec.training.ranking_eval.ServedRanker`):
the meta-learned ranker adapts the user's vector to the support set (its learnt step sizes, the
card's steps; the softmax over the whole item matrix), the EASE prior folds the support in
(rating weights), each is standardised over the ranked items (support excluded) and they are
blended with the card's weight. The item tower and the item matrix's positions in the EASE prior
are computed once per item matrix. When the item matrix holds exactly the training catalogue (the
usual case), the list equals offline evaluation's for the same user and support.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from metarec.learning.item_models import implicit_weights
from metarec.learning.ranker import ItemTower, adapted_scores
from metarec.serving.features import ItemMatrix
from metarec.training.artifact import RankerParts
from metarec.training.encoding import FeatureEncoder
from metarec.training.ranking import blend, ranker_item_codes, ranker_user_codes


@dataclass(frozen=True)
class _ItemTerms:
    items: ItemMatrix
    tower: ItemTower
    prior_rows: np.ndarray  # (N,) row of each item in the EASE prior, -1 when absent


def _zscore(values: np.ndarray) -> np.ndarray:
    """z-scores of the ranked items (as :func:`metarec.training.ranking.standardise`)."""
    values = values.astype(np.float64)
    mean = values.mean()
    return (values - mean) / np.sqrt(((values - mean) ** 2).mean() + 1e-12)


class CatalogueRanker:
    """Scores candidate items for one request with the version's served ranker."""

    def __init__(
        self, parts: RankerParts, *, encoder: FeatureEncoder, steps: int, blend_weight: float
    ) -> None:
        """Wrap the ranker's weights.

        Args:
            parts: The ranker and its EASE prior (from the artifact).
            encoder: The version's feature encoder (column layout of the item matrix).
            steps: Inner steps (the card's).
            blend_weight: Weight of the EASE prior (the card's).
        """
        self.parts = parts
        self.encoder = encoder
        self.steps = steps
        self.blend_weight = blend_weight
        self._lock = threading.Lock()
        self._cached: _ItemTerms | None = None
        for parameter in parts.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def _terms(self, items: ItemMatrix) -> _ItemTerms:
        with self._lock:
            cached = self._cached
        if cached is not None and cached.items is items:
            return cached
        codes = torch.from_numpy(ranker_item_codes(self.encoder, items.codes))
        tower = self.parts.model.items(codes)
        known = self.parts.item_ids
        pos = np.clip(np.searchsorted(known, items.item_ids), 0, max(len(known) - 1, 0))
        rows = np.where(known[pos] == items.item_ids, pos, -1) if len(known) else pos - 1
        terms = _ItemTerms(items=items, tower=tower, prior_rows=rows.astype(np.int64))
        with self._lock:
            self._cached = terms
        return terms

    @torch.no_grad()
    def scores(
        self,
        items: ItemMatrix,
        *,
        user_codes: np.ndarray,
        support_rows: np.ndarray,
        support_ratings: np.ndarray,
        candidate_rows: np.ndarray,
    ) -> np.ndarray:
        """Blended scores of ``candidate_rows`` (C,) (support rows must not be among them).

        Args:
            items: The item matrix.
            user_codes: The user's encoded row (W,), zeros for an anonymous request.
            support_rows: Item-matrix rows of the support set (S,).
            support_ratings: Their ratings (S,).
            candidate_rows: Item-matrix rows to score (C,).
        """
        terms = self._terms(items)
        weights = implicit_weights(support_ratings, scheme="weighted").astype(np.float32)
        user = torch.from_numpy(ranker_user_codes(self.encoder, user_codes[None, :]))  # (1, U)
        meta = adapted_scores(
            self.parts.model,
            torch.empty(0),
            user,
            torch.from_numpy(support_rows[None, :].astype(np.int64)),
            torch.from_numpy(weights[None, :]),
            steps=self.steps,
            tower=terms.tower,
        )[0].numpy()  # (N,)
        prior = np.zeros(len(candidate_rows), np.float64)  # (C,)
        s_rows = terms.prior_rows[support_rows]
        c_rows = terms.prior_rows[candidate_rows]
        s_known, c_known = s_rows >= 0, c_rows >= 0
        if s_known.any() and c_known.any():
            b = self.parts.ease.B  # (I, I)
            prior[c_known] = weights[s_known] @ b[np.ix_(s_rows[s_known], c_rows[c_known])]
        return blend(_zscore(meta[candidate_rows]), _zscore(prior), weight=self.blend_weight)

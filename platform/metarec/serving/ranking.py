"""``/recommend``'s ranking: the served ranker of a version, over the online item matrix.

The same computation as offline evaluation (:class:`metarec.training.ranking_eval.ServedRanker`):
the meta-learned ranker adapts the user's vector to the support set (its learnt step sizes, the
card's steps; the softmax over the whole item matrix), the EASE prior folds the support in
(rating weights), each is standardised over the ranked items (support excluded) and they are
blended with the card's weight. The item tower and the item matrix's positions in the EASE prior
are computed once per item matrix (both integer ids, or both a team's text ids: the card's
catalogue, :attr:`RankerParts.item_ids`). When the item matrix holds exactly the training
catalogue (the usual case), the list equals offline evaluation's for the same user and support.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
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
class RankingJob:
    """One ``/recommend`` request's ranking problem, as rows of an item matrix.

    Attributes:
        items: The item matrix the rows refer to.
        user_codes: The user's encoded row (W,), zeros for an anonymous request.
        support_rows: Item-matrix rows of the support set (S,).
        support_ratings: Their ratings (S,).
        candidate_rows: Item-matrix rows to score (C,), the support rows excluded.
    """

    items: ItemMatrix
    user_codes: np.ndarray
    support_rows: np.ndarray
    support_ratings: np.ndarray
    candidate_rows: np.ndarray


@dataclass(frozen=True)
class _ItemTerms:
    items: ItemMatrix
    tower: ItemTower
    prior_rows: np.ndarray  # (N,) row of each item in the EASE prior, -1 when absent


def prior_rows(catalogue: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """The row of each of ``item_ids`` in the prior's ``catalogue`` (-1 where absent).

    Both are integer ids, or both a team's text ids (the catalogue as the card lists it, in
    catalogue order, not necessarily sorted); ids of the other kind are absent.
    """
    known = np.asarray(catalogue)
    if not len(known) or not len(item_ids):
        return np.full(len(item_ids), -1, dtype=np.int64)
    if known.dtype.kind != np.asarray(item_ids).dtype.kind:  # int ids against text ids
        return np.full(len(item_ids), -1, dtype=np.int64)
    order = np.argsort(known, kind="stable")
    ordered = known[order]
    pos = np.clip(np.searchsorted(ordered, item_ids), 0, len(known) - 1)
    return np.where(ordered[pos] == item_ids, order[pos], -1).astype(np.int64)


def _zscore(values: np.ndarray) -> np.ndarray:
    """z-scores of the ranked items (as :func:`metarec.training.ranking.standardise`)."""
    values = values.astype(np.float64)
    mean = values.mean()
    return (values - mean) / np.sqrt(((values - mean) ** 2).mean() + 1e-12)


class CatalogueRanker:
    """Scores candidate items with the version's served ranker, a batch of requests at once."""

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
        terms = _ItemTerms(
            items=items, tower=tower, prior_rows=prior_rows(self.parts.item_ids, items.item_ids)
        )
        with self._lock:
            self._cached = terms
        return terms

    @torch.no_grad()
    def __call__(self, jobs: Sequence[RankingJob]) -> list[np.ndarray]:
        """Blended scores of each job's candidate rows, the users of all jobs adapted at once.

        Jobs of one batch may refer to different item matrices (a refresh mid-batch): each
        item matrix's jobs are adapted together.
        """
        out: dict[int, np.ndarray] = {}
        groups: dict[int, list[int]] = {}
        for n, job in enumerate(jobs):
            groups.setdefault(id(job.items), []).append(n)
        for members in groups.values():
            scored = self._score([jobs[n] for n in members])
            out.update(zip(members, scored, strict=True))
        return [out[n] for n in range(len(jobs))]

    def scores(
        self,
        items: ItemMatrix,
        *,
        user_codes: np.ndarray,
        support_rows: np.ndarray,
        support_ratings: np.ndarray,
        candidate_rows: np.ndarray,
    ) -> np.ndarray:
        """Blended scores of one request's ``candidate_rows`` (C,); see :class:`RankingJob`."""
        job = RankingJob(items, user_codes, support_rows, support_ratings, candidate_rows)
        return self([job])[0]

    @torch.no_grad()
    def _score(self, jobs: Sequence[RankingJob]) -> list[np.ndarray]:
        terms = self._terms(jobs[0].items)
        s_len = max(1, max(len(j.support_rows) for j in jobs))
        support = np.zeros((len(jobs), s_len), np.int64)  # (T, S) padding: row 0, weight 0
        weights = np.zeros((len(jobs), s_len), np.float32)  # (T, S)
        for t, job in enumerate(jobs):
            support[t, : len(job.support_rows)] = job.support_rows
            weights[t, : len(job.support_rows)] = implicit_weights(
                job.support_ratings, scheme="weighted"
            )
        codes = np.stack([j.user_codes for j in jobs])  # (T, W)
        meta = adapted_scores(
            self.parts.model,
            torch.empty(0),
            torch.from_numpy(ranker_user_codes(self.encoder, codes)),
            torch.from_numpy(support),
            torch.from_numpy(weights),
            steps=self.steps,
            tower=terms.tower,
        ).numpy()  # (T, N)
        out = []
        for t, job in enumerate(jobs):
            prior = self._prior(terms, job, weights[t, : len(job.support_rows)])  # (C,)
            out.append(
                blend(
                    _zscore(meta[t, job.candidate_rows]), _zscore(prior), weight=self.blend_weight
                )
            )
        return out

    def _prior(self, terms: _ItemTerms, job: RankingJob, weights: np.ndarray) -> np.ndarray:
        """The EASE fold-in of the job's support set on its candidates (C,)."""
        prior = np.zeros(len(job.candidate_rows), np.float64)
        s_rows = terms.prior_rows[job.support_rows]
        c_rows = terms.prior_rows[job.candidate_rows]
        s_known, c_known = s_rows >= 0, c_rows >= 0
        if s_known.any() and c_known.any():
            b = self.parts.ease.B  # (I, I)
            prior[c_known] = weights[s_known] @ b[np.ix_(s_rows[s_known], c_rows[c_known])]
        return prior

"""Batched adaptation: many requests' support sets adapted together, then their queries scored.

Offline evaluation (:func:`metarec.training.methods.adapted_predictions`) embeds encoded rows
with ``model.embed``, calls :func:`metarec.learning.adaptation.adapt_embedded` (first-order,
the card's steps and rate, or the Meta-SGD rates) and scores the query rows with the adapted
decision MLP. Predictions are returned unclamped so that ranking never ties on the scale's
ends; the engine clamps what it reports as a rating to 1..5 (as offline evaluation does).

The service calls the same adaptation function with the same arguments; only the embedding and
the scoring are organised for serving:

* Every catalogue item's embedding (user columns empty) is computed once per item matrix, each
  request's user embedding (item columns empty) once, and a row's embedding is their sum. Code 0
  embeds to exact zeros (``padding_idx``) and the genre mean of a row without genres is exactly
  zero, so the sum equals ``model.embed`` of the composed row bit for bit. The outer-loop offset
  (e.g. the learnt item bias, ``model.offset``) is additive over fields in the same way: it is
  subtracted from the support ratings before adaptation and added back to the predictions.
* The rows are scored by the decision MLP's one forward pass,
  :func:`metarec.learning.scoring.score_split_rows`, with every request's adapted parameters at
  once (``model.decision.layers`` hands them over as layers; serving never reads parameter
  names). A row's embedding is the cached item part plus the request's user part, and the first
  layer is linear, so the item part is one matrix product of the cached item embeddings with
  every request's weight (no per-row embedding is ever composed) and the user part one row per
  request. The item part reads only the embedding columns where some item is non-zero (the user
  fields' columns are exact zeros for items: 24 of 56 columns with the ml-100k features). The
  sums are reassociated, so the predictions equal offline evaluation's to float32 rounding
  (≈1e-6; the tests hold them to 1e-5).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metarec.learning.adaptation import adapt_embedded
from metarec.learning.scoring import Linear, score_split_rows
from metarec.serving.features import ItemMatrix
from metarec.training.methods import AdaptedModel


@dataclass(frozen=True)
class AdaptationJob:
    """One request's adaptation problem, as rows of an item matrix plus the user's codes.

    Attributes:
        items: The item matrix the row indices refer to.
        user_codes: The user's encoded codes (W,), only user columns non-zero (zeros: unknown).
        support_rows: Item rows of the support set (S,) int64.
        support_y: Support ratings (S,) float32.
        query_rows: Item rows to score (Q,) int64.
    """

    items: ItemMatrix
    user_codes: np.ndarray
    support_rows: np.ndarray
    support_y: np.ndarray
    query_rows: np.ndarray


@dataclass(frozen=True)
class ItemTerms:
    """What every request shares about one item matrix.

    Attributes:
        items: The item matrix.
        h: Embeddings of every item row, user columns empty (N, D).
        offsets: Outer-loop offsets of every item row (N,).
        columns: The embedding columns where some item is non-zero (C,): the user fields'
            columns are exact zeros for every item, so scoring skips them.
        h_used: ``h[:, columns]`` (N, C).
    """

    items: ItemMatrix
    h: torch.Tensor
    offsets: torch.Tensor
    columns: torch.Tensor
    h_used: torch.Tensor


class BatchedAdapter:
    """Adapts a batch of jobs in one ``vmap`` call and returns each job's predictions."""

    def __init__(self, adapted: AdaptedModel, *, device: torch.device | None = None) -> None:
        """Wrap a served model.

        Args:
            adapted: The model and its (offline evaluation's) inner loop.
            device: Where to run (default CPU).
        """
        self.adapted = adapted
        self.device = device or torch.device("cpu")
        self._lock = threading.Lock()
        self._cached: ItemTerms | None = None
        model = adapted.model
        # As adapted_predictions: the card's rate, or the model's Meta-SGD rates.
        use_rates = adapted.use_meta_sgd and model.inner_lrs is not None
        self._lr = model.inner_lr() if use_rates else adapted.inner.lr
        self._params = {k: v.detach() for k, v in model.decision_params().items()}

    @property
    def steps(self) -> int:
        """Inner steps per adaptation."""
        return self.adapted.inner.steps

    @torch.no_grad()
    def item_embeddings(self, items: ItemMatrix) -> torch.Tensor:
        """Embeddings (N, D) of every item row (user columns empty), cached per matrix."""
        return self.item_terms(items).h

    @torch.no_grad()
    def item_terms(self, items: ItemMatrix) -> ItemTerms:
        """Embeddings and outer-loop offsets of every item row, cached per matrix."""
        with self._lock:
            cached = self._cached
        if cached is not None and cached.items is items:
            return cached
        codes = torch.from_numpy(items.codes).to(self.device)  # (N, W)
        model = self.adapted.model
        h = model.embed(codes)  # (N, D)
        columns = torch.nonzero((h != 0).any(0)).squeeze(1)  # (C,)
        terms = ItemTerms(items, h, model.offset(codes), columns, h[:, columns].contiguous())
        with self._lock:
            self._cached = terms
        return terms

    def __call__(self, jobs: Sequence[AdaptationJob]) -> list[np.ndarray]:
        """Raw (unclamped) predictions (Q,) per job, in job order."""
        out: dict[int, np.ndarray] = {}
        groups: dict[int, list[int]] = {}
        for n, job in enumerate(jobs):  # one group per item matrix (a refresh mid-batch)
            groups.setdefault(id(job.items), []).append(n)
        for members in groups.values():
            out.update(zip(members, self._adapt([jobs[n] for n in members]), strict=True))
        return [out[n] for n in range(len(jobs))]

    def _adapt(self, jobs: Sequence[AdaptationJob]) -> list[np.ndarray]:
        """Predictions of jobs that share one item matrix."""
        if not jobs:
            return []
        model = self.adapted.model
        terms = self.item_terms(jobs[0].items)
        with torch.no_grad():
            users = torch.from_numpy(np.stack([j.user_codes for j in jobs])).to(self.device)
            h_users = model.embed(users)  # (T, D)
            off_users = model.offset(users)  # (T,)
            hs, ys, mask = self._support_set(jobs, terms, h_users, off_users)
        with torch.enable_grad():
            fast = adapt_embedded(
                model.decision,
                self._params,
                hs,
                ys,
                mask,
                steps=self.adapted.inner.steps,
                lr=self._lr,
                first_order=True,
            )
        with torch.no_grad():
            layers = model.decision.layers({k: v.detach() for k, v in fast.items()})
            return self._score(jobs, terms, layers, h_users, off_users)

    def _support_set(
        self,
        jobs: Sequence[AdaptationJob],
        terms: ItemTerms,
        h_users: torch.Tensor,
        off_users: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded support embeddings (T, S, D), targets (rating − offset) and mask (T, S)."""
        n_tasks = len(jobs)
        s_len = max(1, max(len(j.support_rows) for j in jobs))
        rows = np.zeros((n_tasks, s_len), dtype=np.int64)  # (T, S) padding: row 0, masked
        y = np.zeros((n_tasks, s_len), dtype=np.float32)  # (T, S)
        mask = np.zeros((n_tasks, s_len), dtype=np.float32)  # (T, S)
        for t, job in enumerate(jobs):
            s = len(job.support_rows)
            rows[t, :s] = job.support_rows
            y[t, :s] = job.support_y
            mask[t, :s] = 1.0
        rows_t = torch.from_numpy(rows).to(self.device)  # (T, S)
        mask_t = torch.from_numpy(mask).to(self.device)  # (T, S)
        keep = mask_t.unsqueeze(-1)  # (T, S, 1)
        hs = (terms.h[rows_t] + h_users.unsqueeze(1)) * keep  # (T, S, D), padding exactly 0
        offs = terms.offsets[rows_t] + off_users.unsqueeze(1)  # (T, S)
        ys = (torch.from_numpy(y).to(self.device) - offs) * mask_t  # (T, S) rating − offset
        return hs, ys, mask_t

    def _score(
        self,
        jobs: Sequence[AdaptationJob],
        terms: ItemTerms,
        layers: list[Linear],
        h_users: torch.Tensor,
        off_users: torch.Tensor,
    ) -> list[np.ndarray]:
        """Each job's query rows under its adapted layers (T, ...), offsets added back."""
        q_max = max(len(j.query_rows) for j in jobs)
        if 2 * q_max >= len(terms.offsets):  # most of the catalogue: score it all, pick after
            raw = score_split_rows(
                layers, terms.h_used, h_users, shared_columns=terms.columns
            )  # (T, N)
            pred = raw + (terms.offsets.unsqueeze(0) + off_users.unsqueeze(1))  # (T, N)
            scores = pred.cpu().numpy()
            return [scores[t, job.query_rows] for t, job in enumerate(jobs)]
        query = np.zeros((len(jobs), q_max), dtype=np.int64)  # (T, Q) padding: row 0
        for t, job in enumerate(jobs):
            query[t, : len(job.query_rows)] = job.query_rows
        query_t = torch.from_numpy(query).to(self.device)  # (T, Q)
        h_query = terms.h_used[query_t]  # (T, Q, C)
        raw = score_split_rows(layers, h_query, h_users, shared_columns=terms.columns)  # (T, Q)
        pred = raw + (terms.offsets[query_t] + off_users.unsqueeze(1))  # (T, Q)
        scores = pred.cpu().numpy()
        return [scores[t, : len(job.query_rows)] for t, job in enumerate(jobs)]

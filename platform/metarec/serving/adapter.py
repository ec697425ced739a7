"""Batched adaptation: many requests' support sets adapted together, then their queries scored.

Offline evaluation (:func:`metarec.training.methods.adapted_predictions`) embeds encoded rows
with ``model.embed`` and calls :func:`metarec.learning.adaptation.adapt_embedded` (first-order,
the card's steps and rate, or the Meta-SGD rates) and ``predict_embedded``. Predictions are
returned unclamped so that ranking never ties on the scale's ends; the engine clamps what it
reports as a rating to 1..5 (as offline evaluation does).

The service calls the same two core functions with the same arguments; only the embedding is
organised for serving: every catalogue item's embedding (user columns empty) is computed once
per item matrix, each request's user embedding (item columns empty) once, and a row's embedding
is their sum. Code 0 embeds to exact zeros (``padding_idx``) and the genre mean of a row without
genres is exactly zero, so the sum equals ``model.embed`` of the composed row bit for bit. The
outer-loop offset (e.g. the learnt item bias, ``model.offset``) is additive over fields in the
same way: it is subtracted from the support ratings before adaptation and added back to the
predictions, as offline evaluation does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metarec.learning.adaptation import adapt_embedded, predict_embedded
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
        self._cached: tuple[ItemMatrix, torch.Tensor, torch.Tensor] | None = None
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
        return self._item_terms(items)[0]

    @torch.no_grad()
    def _item_terms(self, items: ItemMatrix) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (N, D) and outer-loop offsets (N,) of every item row, cached per matrix."""
        with self._lock:
            if self._cached is not None and self._cached[0] is items:
                return self._cached[1], self._cached[2]
        codes = torch.from_numpy(items.codes).to(self.device)
        h = self.adapted.model.embed(codes)  # (N, D)
        offsets = self.adapted.model.offset(codes)  # (N,)
        with self._lock:
            self._cached = (items, h, offsets)
        return h, offsets

    def __call__(self, jobs: Sequence[AdaptationJob]) -> list[np.ndarray]:
        """Raw (unclamped) predictions (Q,) per job, in job order."""
        if not jobs:
            return []
        model = self.adapted.model
        n = len(jobs)
        s_len = max(1, max(len(j.support_rows) for j in jobs))
        q_len = max(len(j.query_rows) for j in jobs)
        with torch.no_grad():
            users = torch.from_numpy(np.stack([j.user_codes for j in jobs])).to(self.device)
            h_users = model.embed(users)  # (T, D)
            off_users = model.offset(users)  # (T,)
            width = h_users.shape[-1]
            hs = torch.zeros(n, s_len, width, device=self.device)  # (T, S, D)
            hq = torch.zeros(n, q_len, width, device=self.device)  # (T, Q, D)
            ys = torch.zeros(n, s_len, device=self.device)  # (T, S) support rating − offset
            mask = torch.zeros(n, s_len, device=self.device)  # (T, S)
            offq = torch.zeros(n, q_len, device=self.device)  # (T, Q)
            for t, job in enumerate(jobs):
                h_items, off_items = self._item_terms(job.items)
                s = len(job.support_rows)
                if s:
                    rows = torch.from_numpy(job.support_rows).to(self.device)
                    hs[t, :s] = h_items[rows] + h_users[t]
                    y = torch.from_numpy(job.support_y.astype(np.float32)).to(self.device)
                    ys[t, :s] = y - (off_items[rows] + off_users[t])
                    mask[t, :s] = 1.0
                q = torch.from_numpy(job.query_rows).to(self.device)
                hq[t, : len(job.query_rows)] = h_items[q] + h_users[t]
                offq[t, : len(job.query_rows)] = off_items[q] + off_users[t]
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
            fast = {k: v.detach() for k, v in fast.items()}
            pred = predict_embedded(model.decision, fast, hq) + offq  # (T, Q), unclamped
            out = pred.cpu().numpy()
        return [out[t, : len(job.query_rows)] for t, job in enumerate(jobs)]

"""Batched rating predictions of the meta-learned factor fold-in (``factor_map``).

A version whose artifact holds a factor model (``factor_model.safetensors``) predicts ratings
with it instead of the MeLU model: offline it is the better rating model (see
docs/learning.md, "Factor fold-in"). :class:`FactorAdapter` has :class:`~.adapter.BatchedAdapter`'s
call signature (one :class:`~.adapter.AdaptationJob` per request in, raw unclamped predictions
per job out, in job order), so the engine's micro-batcher takes either.

Each job's support and query rows are composed as offline evaluation's encoded rows are: the
item matrix's codes of the rows with the job's user columns filled in (as
:func:`~.features.compose_rows`). The batch is padded as :func:`metarec.learning.tasks.collate`
pads tasks (support rows with zero codes and mask 0; every query set to the longest, here with
the user's row of item 0, which is sliced off) and goes through the same call that
:func:`metarec.training.factor_training.factor_predictions` makes,
:meth:`FactorModel.predict_tasks` (fold-in, neighbourhood correction, ensemble mean). Masked
support rows contribute exact zeros, so served and offline predictions agree to float32
round-off (the tests hold them to 1e-5). The user's attributes are read off the first query
row, which always carries the user's columns (padding included).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metarec.learning.factor_model import FactorModel
from metarec.serving.adapter import AdaptationJob
from metarec.serving.features import user_columns
from metarec.training.encoding import FeatureEncoder


class FactorAdapter:
    """Folds a batch of jobs' users into the factor model and predicts their query rows."""

    def __init__(
        self,
        model: FactorModel,
        encoder: FeatureEncoder,
        *,
        device: torch.device | None = None,
    ) -> None:
        """Wrap a served factor model.

        Args:
            model: The artifact's factor model (all ensemble members).
            encoder: The version's encoder (which columns of a row belong to the user).
            device: Where to run (default CPU).
        """
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()
        self._user_cols = user_columns(encoder)
        # The closed-form fold-in needs no autograd; the "sgd" inner loop differentiates its
        # inner loss (torch.func.grad), as in factor_predictions.
        self._needs_grad = model.config.inner == "sgd"

    @property
    def steps(self) -> int:
        """Inner steps per adaptation (a closed-form MAP fold-in counts as one)."""
        config = self.model.config
        return config.inner_steps if config.inner == "sgd" else 1

    def _rows(self, job: AdaptationJob, rows: np.ndarray) -> np.ndarray:
        """Encoded rows (R, W) of the job's user with item ``rows`` (as ``compose_rows``)."""
        out = job.items.codes[rows]  # (R, W), a copy
        out[:, self._user_cols] = job.user_codes[self._user_cols]
        return out

    def __call__(self, jobs: Sequence[AdaptationJob]) -> list[np.ndarray]:
        """Raw (unclamped) predictions (Q,) per job, in job order."""
        if not jobs:
            return []
        n_tasks = len(jobs)
        width = jobs[0].items.codes.shape[1]
        s_len = max(1, max(len(j.support_rows) for j in jobs))
        q_len = max(1, max(len(j.query_rows) for j in jobs))
        support_x = np.zeros((n_tasks, s_len, width), dtype=np.float32)  # (T, S, W)
        support_y = np.zeros((n_tasks, s_len), dtype=np.float32)  # (T, S)
        support_mask = np.zeros((n_tasks, s_len), dtype=np.float32)  # (T, S)
        query_x = np.empty((n_tasks, q_len, width), dtype=np.float32)  # (T, Q, W)
        for t, job in enumerate(jobs):
            s, q = len(job.support_rows), len(job.query_rows)
            support_x[t, :s] = self._rows(job, job.support_rows)
            support_y[t, :s] = job.support_y
            support_mask[t, :s] = 1.0
            query = np.zeros(q_len, dtype=np.int64)  # padding: item row 0, sliced off
            query[:q] = job.query_rows
            query_x[t] = self._rows(job, query)
        tensors = [
            torch.from_numpy(a).to(self.device)
            for a in (support_x, support_y, support_mask, query_x)
        ]
        with torch.set_grad_enabled(self._needs_grad):
            pred = self.model.predict_tasks(*tensors).detach()  # (T, Q)
        scores = pred.cpu().numpy()
        return [scores[t, : len(job.query_rows)] for t, job in enumerate(jobs)]

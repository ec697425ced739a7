"""Batched adaptation: many requests' support sets adapted together, then their queries scored.

It is offline evaluation's own function, :func:`metarec.training.methods.adapted_predictions`
(which calls :func:`metarec.learning.adaptation.adapt` — ``vmap`` over tasks, padded support
rows masked — and ``predict``), so a served prediction equals the offline one for the same
support set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metarec.learning.tasks import Task
from metarec.training.methods import AdaptedModel, adapted_predictions


@dataclass(frozen=True)
class AdaptationJob:
    """One request's adaptation problem.

    Attributes:
        support_x: Encoded support rows (S, W) int64.
        support_y: Support ratings (S,) float32.
        query_x: Encoded rows to score (Q, W) int64.
    """

    support_x: np.ndarray
    support_y: np.ndarray
    query_x: np.ndarray


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

    @property
    def steps(self) -> int:
        """Inner steps per adaptation."""
        return self.adapted.inner.steps

    def __call__(self, jobs: Sequence[AdaptationJob]) -> list[np.ndarray]:
        """Predictions (Q,) per job, clamped to 1..5, in job order."""
        if not jobs:
            return []
        tasks = [
            Task(
                user_id=0,
                support_x=job.support_x,
                support_y=job.support_y.astype(np.float32),
                support_items=np.zeros(len(job.support_y), dtype=np.int64),
                query_x=job.query_x,
                query_y=np.zeros(len(job.query_x), dtype=np.float32),
                query_items=np.zeros(len(job.query_x), dtype=np.int64),
            )
            for job in jobs
        ]
        return adapted_predictions(
            self.adapted, tasks, device=self.device, batch_size=max(len(tasks), 1)
        )

"""What the meta-training loops share: seeded episodes and the best weights on validation.

Three loops meta-train a model here: the rating model (:mod:`metarec.training.rating_training`),
the factor fold-in (:mod:`metarec.training.factor_training`) and the catalogue ranker
(:mod:`metarec.training.ranker_training`). Their models and losses differ; what they share
lives here:

* :class:`EpisodeSampler` draws a batch of meta-training tasks for step ``n`` from a generator
  seeded by ``(seed, stream, n)``, so a resumed run draws what the uninterrupted run drew, and
  every rank of a distributed run draws the same global batch (and keeps its part of it).
* :class:`BestOnValidation` records each validation score, keeps a copy of the best weights,
  counts validations without improvement (early stopping after ``patience`` of them) and puts
  the best weights back at the end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from metarec.learning.tasks import Task
from metarec.training.scenarios import TaskSource

Weights = dict[str, torch.Tensor]


def weights_copy(model: torch.nn.Module, *, to_cpu: bool = False) -> Weights:
    """A detached copy of ``model``'s state (moved to the CPU first with ``to_cpu``)."""
    if to_cpu:
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class BestOnValidation:
    """The best validation score so far, its step and weights, and the validations since.

    Attributes:
        higher_is_better: The score rises as the model improves (NDCG) instead of falling (MAE).
        min_delta: A score must beat the best by more than this to count as an improvement.
        patience: Validations without improvement after which :attr:`exhausted` is true
            (None: never).
        to_cpu: Keep the copy of the best weights on the CPU.
        best: The best score so far (the starting point: +inf when lower is better, pass -inf
            when higher is better).
        best_step: The step that scored it.
        bad_evals: Validations since the last improvement.
        weights: The best weights (None until a validation improved, unless given).
    """

    higher_is_better: bool = False
    min_delta: float = 0.0
    patience: int | None = None
    to_cpu: bool = False
    best: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    weights: Weights | None = None

    def improves(self, score: float) -> bool:
        """Whether ``score`` beats the best so far by more than ``min_delta``."""
        if self.higher_is_better:
            return score > self.best + self.min_delta
        return score < self.best - self.min_delta

    def observe(self, step: int, score: float, model: torch.nn.Module) -> bool:
        """Record the validation ``score`` of ``model`` at ``step``; copy its weights if best.

        Returns:
            Whether the score improved on the best so far.
        """
        if self.improves(score):
            self.best, self.best_step, self.bad_evals = score, step, 0
            self.weights = weights_copy(model, to_cpu=self.to_cpu)
            return True
        self.bad_evals += 1
        return False

    @property
    def exhausted(self) -> bool:
        """True once ``patience`` validations in a row brought no improvement."""
        return self.patience is not None and self.bad_evals >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best weights into ``model`` (nothing happens when none were kept)."""
        if self.weights is not None:
            model.load_state_dict(self.weights)


@dataclass(frozen=True)
class EpisodeSampler:
    """Seeded batches of meta-training tasks (random support/query splits of existing items).

    Attributes:
        source: The encoded rows.
        pool: Users the batches are drawn from (those with more than ``query_size`` ratings
            of existing items).
        batch_size: Tasks per batch (at most; fewer when the pool is smaller).
        query_size: Query ratings per task.
        support_min: Smallest support set.
        support_max: Largest support set.
        max_ratings: Ratings drawn per task at most.
        seed: The run's seed.
        stream: Tells apart the random streams of different loops on the same seed.
    """

    source: TaskSource
    pool: np.ndarray
    batch_size: int
    query_size: int
    support_min: int
    support_max: int
    max_ratings: int
    seed: int
    stream: int

    @classmethod
    def of_users(
        cls,
        source: TaskSource,
        users: Iterable[int],
        *,
        batch_size: int,
        query_size: int,
        support_min: int,
        support_max: int,
        max_ratings: int,
        seed: int,
        stream: int,
    ) -> EpisodeSampler:
        """A sampler over those of ``users`` with more than ``query_size`` existing ratings."""
        pool = np.array([u for u in users if len(source.existing.rows.get(u, ())) > query_size])
        return cls(
            source=source,
            pool=pool,
            batch_size=batch_size,
            query_size=query_size,
            support_min=support_min,
            support_max=support_max,
            max_ratings=max_ratings,
            seed=seed,
            stream=stream,
        )

    def __len__(self) -> int:
        """Users in the pool (0: nothing to meta-train on)."""
        return len(self.pool)

    def tasks(self, step: int) -> list[Task]:
        """The batch of ``step``: seeded by ``(seed, stream, step)``, users without repeats."""
        rng = np.random.default_rng([self.seed, self.stream, step])
        users = rng.choice(self.pool, size=min(self.batch_size, len(self.pool)), replace=False)
        return self.source.training_tasks(
            users,
            rng=rng,
            query_size=self.query_size,
            support_min=self.support_min,
            support_max=self.support_max,
            max_ratings=self.max_ratings,
        )

"""Training the catalogue ranker: meta-learned (episodic) and plain (free user vectors).

* :func:`fit_meta_ranker` meta-trains the ranker: each task is a training user whose first K
  ratings (time or random order) are the support, and whose later ratings of 4 or 5 are the query
  (softmax over the catalogue, support items removed); the user vector is adapted in the inner
  loop (second order); the weights with the best validation NDCG@20 are kept. A share of the
  tasks (``cold_start_share``) has no support at all, so the prior from the user's attributes
  learns to rank for a new user on its own.
* :func:`fit_plain_ranker` is the same model without meta-training: one free vector per
  training user, fitted on whole histories, then fine-tuned on a new user's support set.

Both validate every ``eval_every`` steps and at the last step, and keep the best weights
(:class:`~metarec.training.meta_loop.BestOnValidation`, higher is better, no early stop).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metarec.learning.item_models import implicit_weights
from metarec.learning.ranker import (
    Ranker,
    RankerConfig,
    adapted_scores,
    exclusion_mask,
    logits,
    query_loss,
)
from metarec.training.meta_loop import BestOnValidation
from metarec.training.ranking import LIKED, RankingData


@dataclass(frozen=True)
class RankerTraining:
    """Settings of ranker training (from :class:`~metarec.training.config.TrainingConfig`)."""

    dim: int = 64
    inner_steps: int = 3
    inner_lr_init: float = 0.5
    outer_lr: float = 5e-4
    max_steps: int = 2500
    batch_size: int = 64
    eval_every: int = 100
    support_min: int = 3
    support_max: int = 30
    cold_start_share: float = 0.25  # tasks with no support: the attribute prior alone
    max_query: int = 100
    seed: int = 0


class RankerValidation:
    """Validates a ranker every ``every`` steps (and at the last); keeps the best weights."""

    def __init__(
        self, model: Ranker, validate: Callable[[Ranker], float], *, every: int, last: int
    ) -> None:
        """Watch ``model``; ``validate`` scores it (higher is better)."""
        self.model = model
        self.validate = validate
        self.every = every
        self.last = last
        self.keeper = BestOnValidation(higher_is_better=True, best=-math.inf)
        self.history: list[dict[str, float]] = []

    def after_step(self, step: int, loss: float) -> None:
        """Validate when due; remember the weights when they are the best so far."""
        if step % self.every and step != self.last:
            return
        self.model.eval()
        score = self.validate(self.model)
        self.history.append({"step": step, "loss": loss, "val_ndcg@20": score})
        self.keeper.observe(step, score, self.model)

    def best_model(self) -> tuple[Ranker, list[dict[str, float]]]:
        """The model with the best weights (CPU, eval mode) and the validation history."""
        self.keeper.restore(self.model)
        return self.model.cpu().eval(), self.history


def _pad(lists: Sequence[np.ndarray], *, dtype: type, fill: float = 0) -> torch.Tensor:
    length = max(1, max(len(x) for x in lists))
    out = np.full((len(lists), length), fill, dtype=dtype)
    for n, x in enumerate(lists):
        out[n, : len(x)] = x
    return torch.from_numpy(out)


def _training_batch(
    data: RankingData, users: np.ndarray, rng: np.random.Generator, config: RankerTraining
) -> tuple[torch.Tensor, ...]:
    """Support/query of training users on existing items; half time order, half random."""
    sup, sup_w, qry, qry_w, codes = [], [], [], [], []
    for user in users:
        h = data.histories[int(user)]
        keep = ~data.new_item[h.items]
        items, ratings = h.items[keep], h.ratings[keep]
        if rng.random() < 0.5:
            perm = rng.permutation(len(items))
            items, ratings = items[perm], ratings[perm]
        k = int(rng.integers(config.support_min, min(config.support_max, len(items) - 1) + 1))
        if rng.random() < config.cold_start_share:
            k = 0  # a new user with no ratings yet: ranked from attributes alone
        q_items, q_ratings = items[k:], ratings[k:]
        if len(q_items) > config.max_query:
            pick = np.sort(rng.choice(len(q_items), config.max_query, replace=False))
            q_items, q_ratings = q_items[pick], q_ratings[pick]
        sup.append(items[:k])
        sup_w.append(implicit_weights(ratings[:k], scheme="weighted"))
        qry.append(q_items)
        qry_w.append((q_ratings >= LIKED).astype(np.float32))
        codes.append(data.user_codes[int(user)])
    return (
        _pad(sup, dtype=np.int64),
        _pad(sup_w, dtype=np.float32),
        _pad(qry, dtype=np.int64),
        _pad(qry_w, dtype=np.float32),
        torch.from_numpy(np.stack(codes)),
    )


def _eligible_training_users(data: RankingData, config: RankerTraining) -> np.ndarray:
    counts = {u: int((~data.new_item[data.histories[u].items]).sum()) for u in data.train_users}
    return np.array([u for u, n in counts.items() if n >= config.support_min + 2], dtype=np.int64)


def fit_meta_ranker(
    data: RankingData,
    *,
    config: RankerTraining,
    ranker_config: RankerConfig,
    validate: Callable[[Ranker], float],
    device: torch.device,
    on_step: Callable[[int, int, float, float | None], None] | None = None,
) -> tuple[Ranker, list[dict[str, float]]]:
    """Meta-train a ranker; keep the weights with the best validation score.

    Args:
        data: Ranking data.
        config: Training settings.
        ranker_config: Architecture.
        validate: Validation NDCG of a model (higher is better).
        device: Where to train.
        on_step: Called with (step, total, loss, validation NDCG@20 when measured at this
            step, else None).

    Returns:
        The best model (on CPU, eval mode) and the validation history.
    """
    torch.manual_seed(config.seed)
    model = Ranker(ranker_config).to(device)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=config.outer_lr
    )
    item_codes = torch.from_numpy(data.item_codes).to(device)
    pool = _eligible_training_users(data, config)
    rng = np.random.default_rng([config.seed, 11])
    keeper = RankerValidation(model, validate, every=config.eval_every, last=config.max_steps)
    for step in range(1, config.max_steps + 1):
        users = rng.choice(pool, size=min(config.batch_size, len(pool)), replace=False)
        sup, sup_w, qry, qry_w, codes = (
            t.to(device) for t in _training_batch(data, users, rng, config)
        )
        model.train()
        tower = model.items(item_codes)
        s = adapted_scores(
            model, item_codes, codes, sup, sup_w, steps=config.inner_steps, tower=tower
        )  # (T, I)
        loss = query_loss(s, qry, qry_w, exclusion_mask(data.n_items, sup, sup_w))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        seen = len(keeper.history)
        keeper.after_step(step, float(loss.detach()))
        if on_step:
            score = keeper.history[-1]["val_ndcg@20"] if len(keeper.history) > seen else None
            on_step(step, config.max_steps, float(loss.detach()), score)
    return keeper.best_model()


def fit_plain_ranker(
    data: RankingData,
    *,
    config: RankerTraining,
    ranker_config: RankerConfig,
    validate: Callable[[Ranker], float],
    device: torch.device,
) -> tuple[Ranker, list[dict[str, float]]]:
    """The same model without meta-training: free training-user vectors, whole histories.

    A training user's vector is the attribute prior plus a free vector; the softmax loss is
    over each user's whole history on existing items (rating weights). No support encoder, no
    inner loop in training: a new user starts at the attribute prior and is fine-tuned on the
    support set at evaluation.
    """
    torch.manual_seed(config.seed)
    plain = RankerConfig(**{**ranker_config.to_dict(), "support_encoder": False})  # type: ignore[arg-type]
    model = Ranker(RankerConfig.from_dict(plain.to_dict())).to(device)
    users = np.array(data.train_users, dtype=np.int64)
    free = torch.nn.Embedding(len(users), ranker_config.dim).to(device)
    torch.nn.init.zeros_(free.weight)
    params = [p for p in model.parameters() if p.requires_grad] + list(free.parameters())
    optimizer = torch.optim.Adam(params, lr=config.outer_lr)
    item_codes = torch.from_numpy(data.item_codes).to(device)
    rng = np.random.default_rng([config.seed, 12])
    weights = torch.from_numpy(data.train_matrix)
    keeper = RankerValidation(model, validate, every=config.eval_every, last=config.max_steps)
    for step in range(1, config.max_steps + 1):
        rows = rng.choice(len(users), size=min(config.batch_size, len(users)), replace=False)
        target = weights[rows].to(device)  # (T, I)
        codes = torch.from_numpy(np.stack([data.user_codes[int(u)] for u in users[rows]])).to(
            device
        )
        model.train()
        tower = model.items(item_codes)
        empty = torch.zeros(len(rows), 1, dtype=torch.int64, device=device)
        u = model.prior(codes, tower, empty, torch.zeros(len(rows), 1, device=device))
        u = u + free(torch.from_numpy(rows).to(device))  # (T, D)
        log_p = torch.log_softmax(logits(u, tower), dim=-1)  # (T, I)
        loss = -((log_p * target).sum(-1) / target.sum(-1).clamp(min=1e-6)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        keeper.after_step(step, float(loss.detach()))
    return keeper.best_model()

"""Hyper-parameters of the ranking methods, chosen on validation users (never test users).

Every choice maximises the mean NDCG@20 over the validation users' new-user tasks of every
(order, K) cell: EASE's λ, item-kNN's neighbours, the item mean's shrinkage (:func:`fit_baselines`)
and the served blend weight of the EASE prior (:func:`choose_blend`); the choices are recorded
in the model card.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from metarec.learning.item_models import EASE, ItemKNN, ItemMean, Popularity
from metarec.learning.ranker import Ranker
from metarec.training.ranking import (
    Cells,
    RankingData,
    RankingTask,
    blend,
    ease_scores,
    ndcg20,
    ranker_scores,
    standardise,
    support_matrix,
)

EASE_L2 = (100.0, 300.0, 1000.0, 3000.0)
KNN_NEIGHBOURS = (50, 200, None)
ITEM_MEAN_SHRINKAGE = (5.0, 20.0, 50.0)
PLAIN_LRS = (0.1, 0.3, 1.0)
BLEND_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)

Scorer = Callable[[Sequence[RankingTask]], np.ndarray]
ValidationCell = tuple[list[RankingTask], np.ndarray]  # the tasks and the ranked items (I,)


def fold_in_scorer(
    model: Popularity | ItemMean | ItemKNN | EASE, n_items: int, *, scheme: str
) -> Scorer:
    """Scores of an item-item model folding in each task's support set (``scheme`` weights)."""
    return lambda ts: model.score(support_matrix(ts, n_items, scheme=scheme))


def validation_tasks(
    data: RankingData, users: Sequence[int], *, seed: int, cells: Cells
) -> list[ValidationCell]:
    """New-user tasks of validation users for every cell, with the ranked set (all items)."""
    every = np.ones(data.n_items, bool)
    out = []
    for order, k in cells:
        tasks = data.tasks(users, k=k, order=order, seed=seed, support_from=None, ranked=every)
        if tasks:
            out.append((tasks, every))
    return out


def mean_ndcg(score: Scorer, cells: Sequence[ValidationCell]) -> float:
    """Mean NDCG@20 of a scorer over validation cells."""
    if not cells:
        return 0.0
    return float(np.mean([ndcg20(score(tasks), tasks, ranked) for tasks, ranked in cells]))


def choose(candidates: dict[object, Scorer], cells: Sequence[ValidationCell]) -> object:
    """The candidate key with the best mean validation NDCG@20 (first on ties)."""
    scored = {key: mean_ndcg(score, cells) for key, score in candidates.items()}
    return max(scored, key=lambda key: scored[key])


def fit_baselines(
    data: RankingData, val_cells: Sequence[ValidationCell]
) -> tuple[dict[str, object], dict[str, float | int | None]]:
    """Fit the item baselines, each hyper-parameter chosen on validation users."""
    n = data.n_items
    fitted: dict[str, object] = {"popularity": Popularity.fit(data.train_binary)}
    chosen: dict[str, float | int | None] = {}
    means = {s: ItemMean.fit(data.train_ratings, shrinkage=s) for s in ITEM_MEAN_SHRINKAGE}
    chosen["item_mean_shrinkage"] = choose(
        {s: fold_in_scorer(m, n, scheme="binary") for s, m in means.items()}, val_cells
    )  # type: ignore[assignment]
    fitted["item_mean"] = means[chosen["item_mean_shrinkage"]]  # type: ignore[index]
    knns = {k: ItemKNN.fit(data.train_binary, neighbours=k) for k in KNN_NEIGHBOURS}
    chosen["item_knn_neighbours"] = choose(
        {k: fold_in_scorer(m, n, scheme="binary") for k, m in knns.items()}, val_cells
    )  # type: ignore[assignment]
    fitted["item_knn"] = knns[chosen["item_knn_neighbours"]]  # type: ignore[index]
    for name, matrix, scheme in (
        ("ease", data.train_binary, "binary"),
        ("ease_weighted", data.train_matrix, "weighted"),
    ):
        models = {l2: EASE.fit(matrix, l2=l2) for l2 in EASE_L2}
        best = choose(
            {l2: fold_in_scorer(m, n, scheme=scheme) for l2, m in models.items()}, val_cells
        )
        chosen[f"{name}_l2"] = best  # type: ignore[assignment]
        fitted[name] = models[best]  # type: ignore[index]
    return fitted, chosen


def choose_blend(
    model: Ranker,
    steps: int,
    ease: EASE,
    data: RankingData,
    val_cells: Sequence[ValidationCell],
) -> float:
    """The blend weight of the EASE prior with the best validation NDCG@20.

    Without validation tasks (a tiny data set) the meta-learned ranker is served alone (0).
    """
    if not val_cells:
        return 0.0
    cache = [
        (
            standardise(ranker_scores(model, data, tasks, steps=steps), tasks, ranked),
            standardise(ease_scores(ease, tasks, data.n_items, scheme="weighted"), tasks, ranked),
            tasks,
            ranked,
        )
        for tasks, ranked in val_cells
    ]
    best, best_score = 0.0, -1.0
    for weight in BLEND_WEIGHTS:
        score = float(np.mean([ndcg20(blend(m, p, weight=weight), t, r) for m, p, t, r in cache]))
        if score > best_score + 1e-9:
            best, best_score = weight, score
    return best

"""The ranking protocol: every ranker on the same users, supports and relevant items.

For each scenario, support order (time: the first K ratings, the rest is the user's future;
random: seeded per user) and support size K, every method scores the catalogue; the support
items and the items outside the scenario's ranked set are removed; relevant = the user's later
items rated 4 or 5. Metrics: :data:`~metarec.learning.ranking_metrics.TOPN_METRICS`.

Scenarios: ``new_user`` (held-out users, the whole catalogue ranked, as ``/recommend`` does),
``new_user_new_item`` (held-out users, support and ranking among new items only), ``new_item``
(meta-training users: support from existing items, the new items ranked).

Hyper-parameters of the baselines (EASE's λ, item-kNN's neighbours, the item mean's shrinkage,
the plain ranker's fine-tuning rate) and the served blend weight are chosen on validation users
(``new_user``, every cell), never on test users; the choices are recorded in the model card.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from metarec.learning.adaptation import adapt, predict
from metarec.learning.item_models import EASE, ItemKNN, ItemMean, Popularity
from metarec.learning.ranker import Ranker, RankerConfig
from metarec.learning.ranking_metrics import per_user_metrics, topn_metrics
from metarec.training.artifact import RankerParts
from metarec.training.methods import AdaptedModel
from metarec.training.ranker_training import RankerTraining, fit_meta_ranker, fit_plain_ranker
from metarec.training.ranking import (
    Cells,
    RankingData,
    RankingTask,
    blend,
    cell_name,
    ease_scores,
    mask_scores,
    ranker_scores,
    relevance,
    standardise,
)
from metarec.training.ranking_choice import (
    PLAIN_LRS,
    Scorer,
    ValidationCell,
    choose,
    choose_blend,
    fit_baselines,
    fold_in_scorer,
    mean_ndcg,
    validation_tasks,
)
from metarec.training.scenarios import Scenario, Split

__all__ = [
    "Cells",
    "RankingMethods",
    "RankingRun",
    "RankingTable",
    "ServedRanker",
    "choose_blend",
    "evaluate_ranking",
    "rating_model_scores",
    "train_and_evaluate_ranking",
]

RankingTable = dict[str, dict[str, dict[str, dict[str, float]]]]


@dataclass
class ServedRanker:
    """What ``/recommend`` ranks with: the meta-learned ranker blended with an EASE prior."""

    model: Ranker
    steps: int
    ease: EASE
    blend_weight: float

    def scores(
        self, data: RankingData, tasks: Sequence[RankingTask], ranked: np.ndarray
    ) -> np.ndarray:
        """Blended scores (T, I) (z-scores over the ranked items minus the support)."""
        meta = standardise(ranker_scores(self.model, data, tasks, steps=self.steps), tasks, ranked)
        prior = standardise(
            ease_scores(self.ease, tasks, data.n_items, scheme="weighted"), tasks, ranked
        )
        return blend(meta, prior, weight=self.blend_weight)


@dataclass
class RankingMethods:
    """Every fitted ranker of one evaluation, with the hyper-parameters chosen on validation."""

    served: ServedRanker
    plain: Ranker | None = None
    plain_lr: float = 0.3
    rating_model: AdaptedModel | None = None
    popularity: Popularity | None = None
    item_mean: ItemMean | None = None
    item_knn: ItemKNN | None = None
    ease_binary: EASE | None = None
    chosen: dict[str, float | int | None] = field(default_factory=dict)

    def scorers(self, data: RankingData, ranked: np.ndarray) -> dict[str, Scorer]:
        """``{method: tasks → raw scores (T, I)}`` for every method available."""
        n = data.n_items
        out: dict[str, Scorer] = {
            "ranker": lambda ts: self.served.scores(data, ts, ranked),
            "meta_ranker": lambda ts: ranker_scores(
                self.served.model, data, ts, steps=self.served.steps
            ),
            "ease_weighted": lambda ts: ease_scores(self.served.ease, ts, n, scheme="weighted"),
        }
        if self.plain is not None:
            plain, lr = self.plain, self.plain_lr
            out["plain_ranker"] = lambda ts: ranker_scores(
                plain, data, ts, steps=self.served.steps, lr=lr
            )
        if self.rating_model is not None:
            rating = self.rating_model
            out["rating_model"] = lambda ts: rating_model_scores(rating, data, ts)
        for name, model in (
            ("popularity", self.popularity),
            ("item_mean", self.item_mean),
            ("item_knn", self.item_knn),
        ):
            if model is not None:
                out[name] = fold_in_scorer(model, n, scheme="binary")
        if self.ease_binary is not None:
            out["ease"] = fold_in_scorer(self.ease_binary, n, scheme="binary")
        return out


@torch.no_grad()
def rating_model_scores(
    rating: AdaptedModel, data: RankingData, tasks: Sequence[RankingTask], *, chunk: int = 32
) -> np.ndarray:
    """Today's rating model ranking the catalogue by its predicted rating.

    It is adapted to the support ratings; predictions stay unclamped so the scale's ends do not
    tie.
    """
    model = rating.model
    lr = None if rating.use_meta_sgd and model.inner_lrs is not None else rating.inner.lr
    rows = torch.from_numpy(data.item_rows)  # (I, W)
    out = []
    for start in range(0, len(tasks), chunk):
        part = tasks[start : start + chunk]
        users = torch.from_numpy(np.stack([data.user_rows[t.user_id] for t in part]))  # (T, W)
        s_len = max(len(t.support) for t in part)
        sx = torch.zeros(len(part), s_len, rows.shape[1], dtype=rows.dtype)
        sy = torch.zeros(len(part), s_len)
        sm = torch.zeros(len(part), s_len)
        for n, t in enumerate(part):
            sx[n, : len(t.support)] = rows[t.support] + users[n]
            sy[n, : len(t.support)] = torch.from_numpy(t.support_ratings)
            sm[n, : len(t.support)] = 1.0
        with torch.enable_grad():
            fast = adapt(model, None, sx, sy, sm, steps=rating.inner.steps, lr=lr, first_order=True)
        fast = {k: v.detach() for k, v in fast.items()}
        qx = rows.unsqueeze(0) + users.unsqueeze(1)  # (T, I, W)
        out.append(predict(model, fast, qx).numpy())
    return np.concatenate(out)


def scenario_setting(
    scenario: Scenario, data: RankingData, split: Split
) -> tuple[list[int], np.ndarray | None, np.ndarray]:
    """(users, items the support comes from or None, ranked items) of a scenario."""
    every = np.ones(data.n_items, bool)
    if scenario is Scenario.NEW_USER:
        return list(split.test_users), None, every
    if scenario is Scenario.NEW_USER_NEW_ITEM:
        return list(split.test_users), data.new_item, data.new_item
    return list(data.train_users), ~data.new_item, data.new_item


def evaluate_ranking(
    methods: RankingMethods,
    data: RankingData,
    split: Split,
    *,
    scenarios: Sequence[Scenario],
    cells: Cells,
    users: dict[str, list[int]] | None = None,
    seed: int,
    keep_per_user: dict | None = None,
) -> RankingTable:
    """``{scenario: {cell: {method: {metric: value}}}}`` on the same tasks for every method.

    Args:
        methods: The fitted rankers.
        data: Ranking data.
        split: Users' roles.
        scenarios: Scenarios to run.
        cells: (order, K) cells.
        users: Users per scenario (default: the scenario's users of ``split``).
        seed: Seeds the random order.
        keep_per_user: When given, filled with per-user NDCG@20 arrays
            ``[scenario][cell][method]`` (for paired confidence intervals).
    """
    popularity = data.train_binary.sum(0)  # (I,)
    table: RankingTable = {}
    for scenario in scenarios:
        default_users, support_from, ranked = scenario_setting(scenario, data, split)
        chosen = (users or {}).get(scenario.value, default_users)
        if not ranked.any():
            continue
        scorers = methods.scorers(data, ranked)
        for order, k in cells:
            tasks = data.tasks(
                chosen, k=k, order=order, seed=seed, support_from=support_from, ranked=ranked
            )
            if not tasks:
                continue
            # Ties (e.g. every new item scored 0 by an item-item model) are broken in a seeded
            # random item order, the same for every method: never by item id, which in
            # MovieLens follows popularity and would reward a model that knows nothing.
            shuffle = np.random.default_rng([seed, 17]).permutation(data.n_items)
            rel = relevance(tasks, data.n_items)[:, shuffle]
            cell = table.setdefault(scenario.value, {}).setdefault(cell_name(order, k), {})
            for name, score in scorers.items():
                masked = mask_scores(score(tasks), tasks, ranked)[:, shuffle]
                cell[name] = topn_metrics(masked, rel, popularity=popularity[shuffle])
                if keep_per_user is not None:
                    per = per_user_metrics(masked, rel)["ndcg@20"]
                    keep_per_user.setdefault(scenario.value, {}).setdefault(
                        cell_name(order, k), {}
                    )[name] = per
    return table


@dataclass
class RankingRun:
    """What the trainer keeps from the ranking part of a run."""

    served: ServedRanker
    item_ids: np.ndarray
    table: RankingTable
    card: dict[str, object]

    def parts(self) -> RankerParts:
        """The served ranker's weights as the artifact stores them."""
        return RankerParts(model=self.served.model, ease=self.served.ease, item_ids=self.item_ids)


@dataclass
class FittedRankers:
    """Both trained rankers, their validation histories and the plain ranker's chosen rate."""

    meta: Ranker
    meta_history: list[dict[str, float]]
    plain: Ranker
    plain_history: list[dict[str, float]]
    plain_lr: float


def fit_rankers(
    data: RankingData,
    val_cells: Sequence[ValidationCell],
    *,
    settings: RankerTraining,
    ranker_config: RankerConfig,
    device: torch.device,
    on_step: Callable[[str, int, int, float | None], None] | None = None,
) -> FittedRankers:
    """Train the meta-learned and the plain ranker (best on ``val_cells``); choose the rate.

    The plain ranker's fine-tuning rate is chosen among :data:`PLAIN_LRS` on ``val_cells``.
    """
    steps = settings.inner_steps

    def validate(lr: float | None) -> Callable[[Ranker], float]:
        def score(model: Ranker) -> float:
            return mean_ndcg(
                lambda ts: ranker_scores(model.cpu(), data, ts, steps=steps, lr=lr), val_cells
            )

        return lambda model: _on_device(score, model, device)

    meta, meta_history = fit_meta_ranker(
        data,
        config=settings,
        ranker_config=ranker_config,
        validate=validate(None),
        device=device,
        on_step=(
            (lambda step, total, _loss, score: on_step("ranker", step, total, score))
            if on_step
            else None
        ),
    )
    plain, plain_history = fit_plain_ranker(
        data,
        config=settings,
        ranker_config=ranker_config,
        validate=validate(PLAIN_LRS[1]),
        device=device,
    )
    plain_lr = choose(
        {
            lr: (lambda ts, lr=lr: ranker_scores(plain, data, ts, steps=steps, lr=lr))
            for lr in PLAIN_LRS
        },
        val_cells,
    )
    return FittedRankers(meta, meta_history, plain, plain_history, float(plain_lr))  # type: ignore[arg-type]


def train_and_evaluate_ranking(
    data: RankingData,
    split: Split,
    *,
    settings: RankerTraining,
    ranker_config: RankerConfig,
    rating_model: AdaptedModel | None,
    scenarios: Sequence[Scenario],
    cells: Cells,
    device: torch.device,
    on_step: Callable[[str, int, int, float | None], None] | None = None,
    keep_per_user: dict | None = None,
    users: dict[str, list[int]] | None = None,
) -> RankingRun:
    """Fit the baselines and both rankers, choose the blend, evaluate every method.

    Args:
        data: Ranking data of the training set.
        split: Users' roles (validation users tune, test users are evaluated).
        settings: Ranker training settings.
        ranker_config: Ranker architecture.
        rating_model: Today's rating model (ranked by predicted rating), if any.
        scenarios: Scenarios to evaluate.
        cells: (order, K) cells.
        device: Where the rankers train.
        on_step: Progress: (phase, step, total, validation NDCG@20 when just measured).
        keep_per_user: Filled with per-user NDCG@20 (see :func:`evaluate_ranking`).
        users: Users per scenario to evaluate (default: every held-out user of the split).

    Returns:
        The served ranker, the ranking table and the card's ``ranker`` section.
    """
    val_cells = validation_tasks(data, split.val_users, seed=split.seed, cells=cells)
    fitted, chosen = fit_baselines(data, val_cells)
    rankers = fit_rankers(
        data,
        val_cells,
        settings=settings,
        ranker_config=ranker_config,
        device=device,
        on_step=on_step,
    )
    ease: EASE = fitted["ease_weighted"]  # type: ignore[assignment]
    weight = choose_blend(rankers.meta, settings.inner_steps, ease, data, val_cells)
    served = ServedRanker(
        model=rankers.meta, steps=settings.inner_steps, ease=ease, blend_weight=weight
    )
    table = evaluate_ranking(
        _every_method(served, rankers, rating_model, fitted, graded=data.graded),
        data,
        split,
        scenarios=scenarios,
        cells=cells,
        seed=split.seed,
        keep_per_user=keep_per_user,
        users=users,
    )
    card = _ranker_card(ranker_config, settings, served, rankers, chosen, cells)
    return RankingRun(served=served, item_ids=data.item_ids, table=table, card=card)


def _every_method(
    served: ServedRanker,
    rankers: FittedRankers,
    rating_model: AdaptedModel | None,
    baselines: dict[str, object],
    *,
    graded: bool,
) -> RankingMethods:
    """The served ranker, both rankers, the rating model and the fitted item baselines.

    ``item_mean`` only where the interactions are graded (ratings, not implicit events).
    """
    return RankingMethods(
        served=served,
        plain=rankers.plain,
        plain_lr=rankers.plain_lr,
        rating_model=rating_model,
        popularity=baselines["popularity"],  # type: ignore[arg-type]
        item_mean=baselines["item_mean"] if graded else None,  # type: ignore[arg-type]
        item_knn=baselines["item_knn"],  # type: ignore[arg-type]
        ease_binary=baselines["ease"],  # type: ignore[arg-type]
    )


def _ranker_card(
    ranker_config: RankerConfig,
    settings: RankerTraining,
    served: ServedRanker,
    rankers: FittedRankers,
    chosen: dict[str, float | int | None],
    cells: Cells,
) -> dict[str, object]:
    """The card's ``ranker`` section: architecture, blend, choices and training histories."""
    weight = served.blend_weight
    return {
        "config": ranker_config.to_dict(),
        "inner_steps": settings.inner_steps,
        "blend_weight": weight,
        "ease_l2": chosen["ease_weighted_l2"],
        "chosen_on_validation": {
            **chosen,
            "plain_ranker_lr": rankers.plain_lr,
            "blend_weight": weight,
        },
        "cells": [cell_name(o, k) for o, k in cells],
        "history": {"meta_ranker": rankers.meta_history, "plain_ranker": rankers.plain_history},
    }


def _on_device(score: Callable[[Ranker], float], model: Ranker, device: torch.device) -> float:
    """Validate on CPU, then move the model back to its training device."""
    try:
        return score(model)
    finally:
        model.to(device)

"""Per-user values of the candidate and production on the same users and the same supports.

The gate's paired regression test (:mod:`metarec.gate.paired`) needs, for every held-out user,
the candidate's metric and production's on the same task. Both artifacts are evaluated here on
the candidate's training set with the candidate's user split and seed, so every user gets the
same support and query (rating) or support and relevant items (ranking) in both; each artifact
encodes them with its own encoder. The rating table pairs each version's served rating method
(per-user MAE, weighted by the user's query ratings as the card pools them, and nDCG@k); the
ranking table pairs the served ranker's per-user nDCG@20. Other metrics have no per-user values
here: their rules judge the mean difference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metarec.features.training_set import Location, load_training_set
from metarec.gate.paired import PairedRequest, PairedValues, PerUser
from metarec.learning.metrics import ndcg_at_k
from metarec.learning.tasks import Task
from metarec.training.artifact import (
    ModelCard,
    load_factor_model,
    load_ranker,
    load_rating_model,
    read_card,
)
from metarec.training.encoding import FeatureEncoder
from metarec.training.evaluation import (
    card_adapted_model,
    card_config,
    card_ranking_methods,
    card_split,
)
from metarec.training.factor_training import factor_predictions
from metarec.training.methods import adapted_predictions, scenario_tasks
from metarec.training.preparation import PreparedData, interactions, prepare, ranking_data
from metarec.training.ranking import Cells, cell_name
from metarec.training.ranking_eval import evaluate_ranking, scenario_setting
from metarec.training.scenarios import Scenario
from metarec.training.served_method import FACTOR_MAP
from metarec.training.trainer import resolve_device

if TYPE_CHECKING:
    import torch

RANKING_METRIC = "ndcg@20"  # the served ranker's metric kept per user
# [scenario][cell][metric] -> {user: (value, weight)} of one version.
_OneSide = dict[str, dict[str, dict[str, dict[int, tuple[float, float]]]]]


@dataclass(frozen=True)
class _Side:
    """One artifact with the training set prepared under the candidate's split."""

    folder: Path
    card: ModelCard
    data: PreparedData


def paired_values(
    candidate_dir: Path,
    production_dir: Path,
    training_set: Location,
    users: Mapping[str, Sequence[Any]],
    request: PairedRequest,
    *,
    device: str = "cpu",
) -> PairedValues:
    """Both versions' per-user values on ``users`` of the candidate's training set.

    Args:
        candidate_dir: The candidate artifact.
        production_dir: Production's artifact (fetched from the registry).
        training_set: The candidate's training set.
        users: The candidate's held-out users per scenario (original ids).
        request: What to pair.
        device: Where the rating models run (``cpu``, ``cuda`` or ``auto``).

    Returns:
        The per-user values (a table is None when it cannot be paired: a method without
        per-user predictions here, or an artifact without a ranker).
    """
    candidate = read_card(candidate_dir)
    df = interactions(load_training_set(training_set)[0])
    split = card_split(df, candidate, card_config(candidate, source=f"{candidate_dir} card"))

    def side(folder: Path, card: ModelCard) -> _Side:
        config = card_config(card, source=f"{folder} model card")
        encoder = FeatureEncoder(**card.encoder)
        return _Side(folder, card, prepare(df, split=split, encoder=encoder, config=config))

    ours, theirs = side(candidate_dir, candidate), side(production_dir, read_card(production_dir))
    codes = {s: ours.data.ids.codes_of_users(list(u)) for s, u in users.items()}
    rating = None
    if request.candidate_method and request.production_method and request.rating_metrics:
        rating = _pair(
            _rating(ours, request.candidate_method, codes, request, resolve_device(device)),
            _rating(theirs, request.production_method, codes, request, resolve_device(device)),
        )
    ranking = None
    if request.ranking_cells:
        ranking = _pair(
            _ranking(ours, codes, request),
            _ranking(theirs, codes, request),
        )
    return PairedValues(
        rating=rating,
        ranking=ranking,
        basis="per-user values of both versions on the candidate's held-out users, supports "
        "and training set",
    )


def _pair(candidate: _OneSide | None, production: _OneSide | None) -> PerUser | None:
    """``[scenario][cell][metric][user] -> (candidate, production, weight)`` on shared users."""
    if candidate is None or production is None:
        return None
    out: dict[str, dict[str, dict[str, dict[int, tuple[float, float, float]]]]] = {}
    for scenario, by_cell in candidate.items():
        for cell, by_metric in by_cell.items():
            for metric, ours in by_metric.items():
                theirs = production.get(scenario, {}).get(cell, {}).get(metric, {})
                out.setdefault(scenario, {}).setdefault(cell, {})[metric] = {
                    user: (value, theirs[user][0], weight)
                    for user, (value, weight) in ours.items()
                    if user in theirs
                }
    return out


def _predictor(
    side: _Side, method: str, device: torch.device
) -> Callable[[Sequence[Task]], list[np.ndarray]] | None:
    """Query predictions of ``method`` of one artifact (None: not a model it holds)."""
    if method == FACTOR_MAP:
        factor = load_factor_model(side.folder, side.card)
        if factor is None:
            return None
        factor.to(device)
        return lambda tasks: factor_predictions(factor, tasks, device=device)
    if method != side.card.algorithm:
        return None
    model = load_rating_model(side.folder, side.card)
    if model is None:
        return None
    model.to(device)
    adapted = card_adapted_model(model, side.card)
    return lambda tasks: adapted_predictions(adapted, tasks, device=device)


def _rating(
    side: _Side,
    method: str,
    codes: Mapping[str, list[int]],
    request: PairedRequest,
    device: torch.device,
) -> _OneSide | None:
    """Per-user rating metrics of ``method`` on the candidate's tasks."""
    predict = _predictor(side, method, device)
    if predict is None:
        return None
    out: _OneSide = {}
    for scenario in request.scenarios:
        for size in request.support_sizes:
            tasks = scenario_tasks(side.data, Scenario(scenario), codes.get(scenario, []), size)
            if not tasks:
                continue
            cell = out.setdefault(scenario, {}).setdefault(str(size), {})
            for task, pred in zip(tasks, predict(tasks), strict=True):
                for metric in request.rating_metrics:
                    cell.setdefault(metric, {})[task.user_id] = _user_metric(metric, pred, task)
    return out


def _user_metric(metric: str, pred: np.ndarray, task: Task) -> tuple[float, float]:
    """One user's (value, weight) of a rating metric; MAE is weighted by its query ratings."""
    truth = np.asarray(task.query_y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if metric == "mae":
        return float(np.abs(pred - truth).mean()), float(len(truth))
    return ndcg_at_k(pred, truth, int(metric.split("@")[1])), 1.0


def _ranking(
    side: _Side, codes: Mapping[str, list[int]], request: PairedRequest
) -> _OneSide | None:
    """Per-user nDCG@20 of one artifact's served ranker on the candidate's ranking tasks."""
    parts = load_ranker(side.folder, side.card)
    if parts is None or side.card.ranker is None:
        return None
    rdata = ranking_data(side.data)
    catalogue = np.asarray(side.data.ids.items_of(rdata.item_ids), dtype=parts.item_ids.dtype)
    if not np.array_equal(catalogue, parts.item_ids):
        return None
    model = load_rating_model(side.folder, side.card)
    adapted = None if model is None else card_adapted_model(model, side.card)
    kept: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    scenarios = tuple(Scenario(s) for s in request.scenarios)
    cells = Cells.parse(list(request.ranking_cells))
    seed = side.data.split.seed
    # The served ranker alone is kept per user: the baselines' scores are not computed.
    served = replace(
        card_ranking_methods(side.card, parts, adapted, rdata),
        rating_model=None,
        popularity=None,
        item_mean=None,
        item_knn=None,
        ease_binary=None,
    )
    evaluate_ranking(
        served,
        rdata,
        side.data.split,
        scenarios=scenarios,
        cells=cells,
        users=dict(codes),
        seed=seed,
        keep_per_user=kept,
    )
    out: _OneSide = {}
    for scenario in scenarios:
        default, support_from, ranked = scenario_setting(scenario, rdata, side.data.split)
        chosen = codes.get(scenario.value, default)
        for order, k in cells:
            name = cell_name(order, k)
            values = kept.get(scenario.value, {}).get(name, {}).get(request.ranking_method)
            if values is None:
                continue
            tasks = rdata.tasks(
                chosen, k=k, order=order, seed=seed, support_from=support_from, ranked=ranked
            )
            out.setdefault(scenario.value, {}).setdefault(name, {})[RANKING_METRIC] = {
                task.user_id: (float(value), 1.0) for task, value in zip(tasks, values, strict=True)
            }
    return out

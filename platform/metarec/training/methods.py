"""Evaluate every method (baselines and meta-learned models) on the same tasks.

:func:`evaluate_tasks` scores every method on one list of tasks; :func:`evaluate_all` does so
for every scenario and support size of a prepared training set (the card's ``metrics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metarec.learning.adaptation import adapt, predict
from metarec.learning.algorithms import InnerLoop
from metarec.learning.baselines import BiasModel
from metarec.learning.factor_model import FactorModel
from metarec.learning.metrics import evaluate_predictions
from metarec.learning.model import MeLU
from metarec.learning.tasks import Task, batches, collate
from metarec.training.factor_training import factor_predictions
from metarec.training.preparation import PreparedData
from metarec.training.progress import ProgressCallback, ProgressEvent
from metarec.training.scenarios import Scenario, parse_support_size

FACTOR_METHOD = "factor_map"


@dataclass(frozen=True)
class AdaptedModel:
    """A model plus how it adapts to a support set at evaluation time."""

    model: MeLU
    inner: InnerLoop
    use_meta_sgd: bool = False


@torch.no_grad()
def _no_adapt_predictions(
    model: MeLU, tasks: Sequence[Task], device: torch.device
) -> list[np.ndarray]:
    model.eval()
    out = []
    for chunk in batches(tasks, 256):
        batch = collate(chunk).to(device)
        pred = model(batch.query_x).cpu().numpy()  # (T, Q)
        out.extend(pred[i, : len(t.query_y)] for i, t in enumerate(chunk))
    return out


def adapted_predictions(
    adapted: AdaptedModel, tasks: Sequence[Task], *, device: torch.device, batch_size: int = 256
) -> list[np.ndarray]:
    """Adapt to each task's support set (batched) and predict its query ratings."""
    model = adapted.model
    model.eval()
    lr = None if adapted.use_meta_sgd and model.inner_lrs is not None else adapted.inner.lr
    out = []
    for chunk in batches(tasks, batch_size):
        batch = collate(chunk).to(device)
        params = {k: v.detach() for k, v in model.decision_params().items()}
        with torch.enable_grad():
            fast = adapt(
                model,
                params,
                batch.support_x,
                batch.support_y,
                batch.support_mask,
                steps=adapted.inner.steps,
                lr=lr,
                first_order=True,
            )
        with torch.no_grad():
            pred = predict(model, {k: v.detach() for k, v in fast.items()}, batch.query_x)
        pred = pred.clamp(1.0, 5.0).cpu().numpy()  # (T, Q)
        out.extend(pred[i, : len(t.query_y)] for i, t in enumerate(chunk))
    return out


def evaluate_tasks(
    tasks: Sequence[Task],
    *,
    bias: BiasModel,
    meta: dict[str, AdaptedModel],
    global_model: MeLU | None,
    finetune: InnerLoop | None,
    device: torch.device,
    factor: FactorModel | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of every method on ``tasks`` (one user each, same support and query sets).

    Args:
        tasks: Evaluation tasks.
        bias: Fitted bias baselines.
        meta: Meta-learned models by method name.
        global_model: The non-meta model (``global_model`` and ``finetune`` methods), if any.
        finetune: Fine-tuning steps/rate for ``finetune``.
        device: Where the models run.
        factor: The meta-learned factor fold-in (method ``factor_map``), if any.

    Returns:
        ``{method: {metric: value}}``.
    """
    truths = [t.query_y for t in tasks]
    preds: dict[str, list[np.ndarray]] = {
        "global_mean": [bias.global_mean(t.query_items) for t in tasks],
        "item_bias": [bias.item(t.query_items) for t in tasks],
        "user_item_bias": [
            bias.user_item(t.support_items, t.support_y, t.query_items) for t in tasks
        ],
    }
    if global_model is not None:
        preds["global_model"] = [
            np.clip(p, 1.0, 5.0) for p in _no_adapt_predictions(global_model, tasks, device)
        ]
        if finetune is not None:
            preds["finetune"] = adapted_predictions(
                AdaptedModel(global_model, finetune), tasks, device=device
            )
    for name, adapted in meta.items():
        preds[name] = adapted_predictions(adapted, tasks, device=device)
    if factor is not None:
        preds[FACTOR_METHOD] = factor_predictions(factor, tasks, device=device)
    return {name: evaluate_predictions(p, truths) for name, p in preds.items()}


def scenario_users(
    data: PreparedData,
    scenario: Scenario,
    users: dict[str, list[int]] | None,
    *,
    min_ratings: int,
    max_ratings: int,
) -> list[int]:
    """The users evaluated in ``scenario``: those given for it, else the protocol's users."""
    chosen = (users or {}).get(scenario.value)
    if chosen is None:
        chosen = data.source.eligible_users(
            scenario, data.split, min_ratings=min_ratings, max_ratings=max_ratings
        )
    return [int(u) for u in chosen]


def scenario_tasks(
    data: PreparedData, scenario: Scenario, users: Sequence[int], size: str
) -> list[Task]:
    """The evaluation tasks of ``users`` in ``scenario`` with support size ``size``."""
    return data.source.evaluation_tasks(
        scenario, users, support_size=parse_support_size(size), seed=data.split.seed
    )


def evaluate_all(
    data: PreparedData,
    *,
    meta: dict[str, AdaptedModel],
    global_model: MeLU | None,
    finetune: InnerLoop | None,
    scenarios: tuple[Scenario, ...],
    support_sizes: tuple[str, ...],
    users: dict[str, list[int]] | None,
    min_ratings: int,
    max_ratings: int,
    device: torch.device,
    on_progress: ProgressCallback | None = None,
    factor: FactorModel | None = None,
) -> tuple[dict, dict[str, list[int]]]:
    """Metrics ``{scenario: {size: {method: {metric}}}}`` and the users of each scenario.

    ``factor`` (the meta-learned factor fold-in) adds the method ``factor_map``; the other
    methods are those of :func:`evaluate_tasks`.
    """
    metrics: dict = {}
    used: dict[str, list[int]] = {}
    total = len(scenarios) * len(support_sizes)
    done = 0
    for scenario in scenarios:
        chosen = scenario_users(
            data, scenario, users, min_ratings=min_ratings, max_ratings=max_ratings
        )
        used[scenario.value] = chosen
        metrics[scenario.value] = {}
        for size in support_sizes:
            tasks = scenario_tasks(data, scenario, chosen, size)
            if tasks:
                metrics[scenario.value][size] = evaluate_tasks(
                    tasks,
                    bias=data.bias,
                    meta=meta,
                    global_model=global_model,
                    finetune=finetune,
                    device=device,
                    factor=factor,
                )
            done += 1
            if on_progress:
                on_progress(ProgressEvent("evaluate", done, total))
    return metrics, used

"""Training and evaluation of the meta-learned factor fold-in (`learning.factor_model`).

``fit_factor_model`` first fits a plain biased matrix factorisation on the meta-train users'
ratings of existing items (item biases and factors; each train user gets free parameters there),
then meta-trains the fold-in episodically on the same users (random support/query splits, the
outer loss is the query MAE after adaptation) with early stopping on the validation users' MAE.
By default it does this five times with different seeds and returns the seed ensemble (one
``FactorModel`` holding the other four as ``extra_members``; predictions are averaged).
No validation or test user's rating ever reaches an item parameter: item codes come from the
encoder (fitted on meta-train rows) and both phases read meta-train rows only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from metarec.learning.factor_model import FactorModel, meta_loss
from metarec.learning.tasks import Task, TaskBatch, batches, collate
from metarec.training.encoding import FeatureEncoder
from metarec.training.factor_settings import (
    FactorTrainingConfig,
    FactorTrainingReport,
    factor_config_for,
)
from metarec.training.meta_loop import BestOnValidation, EpisodeSampler, weights_copy
from metarec.training.scenarios import Scenario, Split, TaskSource

EPISODE_STREAM = 5  # seeds this loop's task sampling apart from the other loops'


def pretrain_factors(
    model: FactorModel,
    items: np.ndarray,
    users: np.ndarray,
    ratings: np.ndarray,
    *,
    config: FactorTrainingConfig,
    device: torch.device,
) -> float:
    """Fit ``model``'s global mean, item biases and factors by plain biased MF (in place).

    Full-batch Adam on ``Σ err² + Σ reg · param²`` (MAP with Gaussian priors) over the training
    ratings; each training user has free bias and factors, which are discarded afterwards except
    for their mean, which starts the learnt prior.

    Args:
        model: The model whose item parameters are fitted.
        items: Item codes of the training ratings (N,).
        users: Dense user indices 0..U-1 of the training ratings (N,).
        ratings: The ratings (N,).
        config: Regularisation, steps and rate.
        device: Where to train.

    Returns:
        The final training loss per rating.
    """
    generator = torch.Generator().manual_seed(config.seed)
    n_users, n_factors = int(users.max()) + 1, model.config.n_factors
    item_t = torch.as_tensor(items, device=device)  # (N,)
    user_t = torch.as_tensor(users, device=device)  # (N,)
    y = torch.as_tensor(ratings, dtype=torch.float32, device=device)  # (N,)
    theta = (0.1 * torch.randn(n_users, 1 + n_factors, generator=generator)).to(device)
    theta[:, 0] = 0.0
    theta.requires_grad_(True)  # (U, 1+F)
    with torch.no_grad():
        model.mean.fill_(float(y.mean()))
    params = [model.mean, model.item_bias.weight, model.item_factors.weight, theta]
    optimizer = torch.optim.Adam(params, lr=config.pretrain_lr)
    user_reg = torch.tensor(
        [config.user_bias_reg] + [config.user_factor_reg] * n_factors, device=device
    )  # (1+F,)
    loss = torch.tensor(float("nan"))
    for _ in range(config.pretrain_steps):
        optimizer.zero_grad(set_to_none=True)
        offset, z = model.item_terms_from_codes(item_t)  # (N,), (N, 1+F)
        err = y - offset - (z * theta[user_t]).sum(-1)  # (N,)
        penalty = (
            config.item_bias_reg * model.item_bias.weight.pow(2).sum()
            + config.item_factor_reg * model.item_factors.weight.pow(2).sum()
            + (user_reg * theta.pow(2)).sum()
        )
        loss = (err.pow(2).sum() + penalty) / len(y)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        model.item_bias.weight[0].zero_()
        model.item_factors.weight[0].zero_()
        model.prior_base.copy_(theta.mean(0))
    return float(loss.detach())


def _validation_tasks(
    source: TaskSource, split: Split, config: FactorTrainingConfig
) -> list[list[Task]]:
    users = source.rated_between(
        split.val_users,
        min_ratings=config.min_user_ratings,
        max_ratings=config.max_user_ratings,
    )
    task_sets = [
        [
            task
            for draw in range(config.val_draws)
            for task in source.evaluation_tasks(
                Scenario.NEW_USER,
                users,
                support_size=k,
                seed=split.seed + 1000 * draw,
                query_size=config.query_size,
            )
        ]
        for k in config.val_support_sizes
    ]
    # A support size no validation user has enough ratings for has no tasks: it is left out
    # (with none left, meta-training runs its steps without early stopping).
    return [tasks for tasks in task_sets if tasks]


def _validation_mae(
    model: FactorModel, task_sets: Sequence[Sequence[Task]], device: torch.device
) -> float:
    maes = []
    for tasks in task_sets:
        preds = factor_predictions(model, tasks, device=device)
        errors = np.concatenate([p - t.query_y for p, t in zip(preds, tasks, strict=True)])
        maes.append(float(np.abs(errors).mean()))
    return float(np.mean(maes))


def fit_factor_model(
    source: TaskSource,
    split: Split,
    encoder: FeatureEncoder,
    *,
    config: FactorTrainingConfig | None = None,
    device: torch.device | str = "cpu",
    on_progress: Callable[[int, float, float | None], None] | None = None,
    report: FactorTrainingReport | None = None,
) -> FactorModel:
    """Pretrain item factors by plain MF, then meta-train the fold-in; return the best model.

    Args:
        source: Encoded rows and their grouping (the trainer's :class:`TaskSource`).
        split: Which users are meta-train / validation / test.
        encoder: The encoder of ``source`` (row layout, vocabulary sizes).
        config: Hyper-parameters (defaults: :class:`FactorTrainingConfig`).
        device: Where to train.
        on_progress: Called with (step, meta loss, validation MAE or None) after each step.
        report: Filled in with the training history when given.

    Returns:
        The model with the best validation MAE (eval mode, on ``device``).
    """
    config = config or FactorTrainingConfig()
    report = report if report is not None else FactorTrainingReport()
    device = torch.device(device)
    if config.members > 1:
        return _fit_ensemble(
            source,
            split,
            encoder,
            config=config,
            device=device,
            on_progress=on_progress,
            report=report,
        )
    rows = source.rows_of(split.train_users)  # existing items only
    items = source.x[rows, encoder.field_names.index("item_id")].astype(np.int64)
    torch.manual_seed(config.seed)
    model = FactorModel(
        factor_config_for(encoder, config=config, global_mean=float(source.y[rows].mean()))
    ).to(device)
    _, dense_users = np.unique(source.user_ids[rows], return_inverse=True)
    report.pretrain_loss = pretrain_factors(
        model, items, dense_users, source.y[rows], config=config, device=device
    )
    _meta_train(
        model, source, split, config=config, device=device, on_progress=on_progress, report=report
    )
    return model.eval()


def _fit_ensemble(
    source: TaskSource,
    split: Split,
    encoder: FeatureEncoder,
    *,
    config: FactorTrainingConfig,
    device: torch.device,
    on_progress: Callable[[int, float, float | None], None] | None,
    report: FactorTrainingReport,
) -> FactorModel:
    """Fit ``config.members`` single models (seeds ``seed + 1000 m``) and stack them.

    Member 0 is the model itself, the others its ``extra_members``. ``report`` describes
    member 0, plus every member's best step and validation MAE.
    """
    fitted = []
    for m in range(config.members):
        member_report = report if m == 0 else FactorTrainingReport()
        fitted.append(
            fit_factor_model(
                source,
                split,
                encoder,
                config=replace(config, members=1, seed=config.seed + 1000 * m),
                device=device,
                on_progress=on_progress,
                report=member_report,
            )
        )
        report.members.append(
            {"best_step": member_report.best_step, "best_val_mae": member_report.best_val_mae}
        )
    model = FactorModel(replace(fitted[0].config, members=config.members)).to(device)
    state = dict(fitted[0].state_dict())
    for m, member in enumerate(fitted[1:]):
        state.update({f"extra_members.{m}.{k}": v for k, v in member.state_dict().items()})
    model.load_state_dict(state)
    return model.eval()


def _meta_train(
    model: FactorModel,
    source: TaskSource,
    split: Split,
    *,
    config: FactorTrainingConfig,
    device: torch.device,
    on_progress: Callable[[int, float, float | None], None] | None,
    report: FactorTrainingReport,
) -> None:
    """Meta-train the fold-in episodically; stop early on the validation MAE; keep the best."""
    items = ("item_bias.", "item_factors.", "mean")
    params = [
        p for n, p in model.named_parameters() if config.train_items or not n.startswith(items)
    ]
    optimizer = torch.optim.Adam(params, lr=config.outer_lr)
    sampler = EpisodeSampler.of_users(
        source,
        split.train_users,
        batch_size=config.meta_batch_size,
        query_size=config.query_size,
        support_min=config.support_min,
        support_max=config.support_max,
        max_ratings=config.max_ratings,
        seed=config.seed,
        stream=EPISODE_STREAM,
    )
    val_sets = _validation_tasks(source, split, config)
    # Without validation tasks nothing is observed: the last weights are kept, not the first.
    kept = weights_copy(model) if val_sets else None
    keeper = BestOnValidation(min_delta=1e-5, patience=config.patience, weights=kept)
    keeper.best = _validation_mae(model, val_sets, device) if val_sets else float("inf")
    report.best_val_mae = keeper.best
    report.history = [{"step": 0, "val_mae": keeper.best}]
    for step in range(1, config.meta_steps + 1):
        batch = collate(sampler.tasks(step)).to(device)
        loss = _outer_step(model, optimizer, batch, kind=config.outer_loss)
        report.steps = step
        val_mae = None
        if val_sets and step % config.eval_every == 0:
            val_mae = _validation_mae(model, val_sets, device)
            report.history.append({"step": step, "meta_loss": loss, "val_mae": val_mae})
            keeper.observe(step, val_mae, model)
            report.best_val_mae, report.best_step = keeper.best, keeper.best_step
        if on_progress is not None:
            on_progress(step, loss, val_mae)
        if keeper.exhausted:
            break
    keeper.restore(model)


def _outer_step(
    model: FactorModel, optimizer: torch.optim.Optimizer, batch: TaskBatch, *, kind: str
) -> float:
    """One outer step on the query loss after adaptation; the padding item stays zero."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = meta_loss(
        model,
        batch.support_x,
        batch.support_y,
        batch.support_mask,
        batch.query_x,
        batch.query_y,
        batch.query_mask,
        kind=kind,
    )
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        model.item_bias.weight[0].zero_()
        model.item_factors.weight[0].zero_()
    return float(loss.detach())


@torch.no_grad()
def factor_predictions(
    model: FactorModel, tasks: Sequence[Task], *, device: torch.device | str, batch_size: int = 256
) -> list[np.ndarray]:
    """Adapt to each task's support set and predict its query ratings, clamped to 1..5.

    Args:
        model: A trained factor model.
        tasks: Evaluation tasks (same rows as every other method gets).
        device: Where the model runs.
        batch_size: Tasks per batch.

    Returns:
        One float64 array of query predictions per task.
    """
    model.eval()
    out = []
    for chunk in batches(tasks, batch_size):
        batch = collate(chunk).to(device)
        with torch.enable_grad():  # the "sgd" inner loop differentiates the inner loss
            pred = model.predict_tasks(
                batch.support_x, batch.support_y, batch.support_mask, batch.query_x
            ).detach()  # (T, Q)
        pred = pred.clamp(1.0, 5.0).cpu().numpy()  # (T, Q)
        out.extend(pred[i, : len(t.query_y)].astype(np.float64) for i, t in enumerate(chunk))
    return out

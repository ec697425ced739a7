"""The rating model's training: the non-meta global model, then MeLU meta-training.

:func:`train_rating_models` fits the global model on the meta-training rows, starts the
meta-learned model from it (``init_from_global``), then meta-trains it episodically with early
stopping on validation users' MAE, checkpointing every ``checkpoint_every`` steps (a
checkpoint of the same run is resumed).

Under ``torchrun`` (:mod:`~metarec.training.distributed`) every rank draws the same global
meta-batch and trains on its part; the gradients are all-reduced, so every rank takes the same
step. Rank 0 fits the global model, validates and writes checkpoints; the others receive its
initial weights, its validation scores and (to resume) its checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from metarec.learning.algorithms import Algorithm, InnerLoop, meta_step
from metarec.learning.global_model import fit_global
from metarec.learning.metrics import evaluate_predictions
from metarec.learning.model import MeLU
from metarec.learning.tasks import Task, collate
from metarec.training.checkpoint import (
    CHECKPOINT,
    Checkpointing,
    TrainState,
    load_checkpoint,
    save_checkpoint,
)
from metarec.training.config import TrainingConfig
from metarec.training.distributed import Ranks
from metarec.training.meta_loop import EpisodeSampler
from metarec.training.methods import AdaptedModel, adapted_predictions
from metarec.training.preparation import PreparedData
from metarec.training.progress import ProgressCallback, ProgressEvent
from metarec.training.scenarios import Scenario

EPISODE_STREAM = 3  # seeds this loop's task sampling apart from the other loops'


@dataclass
class RatingModels:
    """The trained rating models of a run and how the meta-learned one adapts."""

    global_model: MeLU
    model: MeLU
    inner: InnerLoop
    state: TrainState
    use_meta_sgd: bool

    def adapted(self) -> AdaptedModel:
        """The meta-learned model with its inner loop (as evaluated and served)."""
        return AdaptedModel(self.model, self.inner, self.use_meta_sgd)


def build_models(data: PreparedData, config: TrainingConfig) -> tuple[MeLU, MeLU]:
    """A fresh (global, meta) model pair for ``data`` (seeded)."""
    common = {
        "embedding_dim": config.embedding_dim,
        "hidden": tuple(config.hidden),
        "output_bias": data.mean_rating,
        "inner_lr_init": config.inner_lr,
        "item_bias": config.item_bias,
    }
    torch.manual_seed(config.seed)
    global_model = MeLU(data.encoder.model_config_for(meta_sgd=False, **common))
    meta_model = MeLU(
        data.encoder.model_config_for(meta_sgd=config.algorithm is Algorithm.METASGD, **common)
    )
    return global_model, meta_model


def fit_global_model(
    model: MeLU,
    data: PreparedData,
    *,
    config: TrainingConfig,
    device: torch.device,
    on_progress: ProgressCallback | None = None,
) -> None:
    """Fit the non-meta global model on the meta-training rows (moved to ``device``)."""
    model.to(device)
    fit_global(
        model,
        data.source.x[data.train_rows],
        data.source.y[data.train_rows],
        epochs=config.global_epochs,
        weight_decay=config.global_weight_decay,
        lr=config.global_lr,
        seed=config.seed,
        device=device,
        on_epoch=(
            lambda e, loss: on_progress(ProgressEvent("global", e + 1, config.global_epochs, loss))
        )
        if on_progress
        else None,
    )


def meta_optimizer(model: MeLU, config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW over the meta-trained parameters (embeddings only with meta_train_embeddings)."""
    params = [
        p
        for name, p in model.named_parameters()
        if config.meta_train_embeddings or not name.startswith(("fields.", "genres."))
    ]
    return torch.optim.AdamW(params, lr=config.outer_lr, weight_decay=config.outer_weight_decay)


def train_rating_models(
    data: PreparedData,
    *,
    config: TrainingConfig,
    device: torch.device,
    checkpoints: Checkpointing,
    on_progress: ProgressCallback | None = None,
    ranks: Ranks | None = None,
) -> RatingModels:
    """Fit the global model, then meta-train the rating model (resuming a checkpoint).

    Args:
        data: The prepared training set.
        config: Hyper-parameters.
        device: Where to train (this rank's device).
        checkpoints: Where checkpoints go; one of the same run there is resumed (rank 0's,
            whatever the world size that wrote it).
        on_progress: Called with :class:`ProgressEvent` during training.
        ranks: This process's place in a distributed job (default: one process). Only rank 0
            fits the global model; the others' global model stays unfitted.

    Returns:
        Both models (on ``device``; the meta-learned one holds its best validation weights).

    Raises:
        CheckpointError: The checkpoint belongs to another run.
    """
    ranks = ranks or Ranks(device=device)
    global_model, model = build_models(data, config)
    if ranks.is_main:  # the other ranks receive the meta-model's initial weights below
        fit_global_model(global_model, data, config=config, device=device, on_progress=on_progress)
    if config.init_from_global:
        model.load_state_dict(global_model.state_dict(), strict=False)
    model.to(device)
    optimizer = meta_optimizer(model, config)
    inner = InnerLoop(steps=config.inner_steps, lr=config.inner_lr)
    state, best = TrainState(), None
    with ranks.file_from_main(checkpoints.directory / CHECKPOINT) as path:
        restored = load_checkpoint(
            path.parent, run_key=checkpoints.run_key, model=model, optimizer=optimizer
        )
    ranks.broadcast_weights(model)
    if restored is not None:
        state, best = restored
    state = meta_train(
        model,
        optimizer,
        data,
        config=config,
        inner=inner,
        state=state,
        best=best,
        checkpoints=checkpoints,
        device=device,
        on_progress=on_progress,
        ranks=ranks,
    )
    use_meta_sgd = config.algorithm is Algorithm.METASGD
    return RatingModels(global_model, model, inner, state, use_meta_sgd)


def validation_tasks(data: PreparedData, config: TrainingConfig) -> list[Task]:
    """New-user tasks of the validation users that early stopping scores."""
    source, split = data.source, data.split
    users = source.rated_between(
        split.val_users, min_ratings=config.min_ratings, max_ratings=config.max_ratings
    )
    return source.evaluation_tasks(
        Scenario.NEW_USER, users, support_size=config.val_support_size, seed=split.seed
    )


def validation_mae(model: AdaptedModel, tasks: Sequence[Task], device: torch.device) -> float:
    """Query MAE of ``model`` adapted to each validation task's support set."""
    preds = adapted_predictions(model, tasks, device=device)
    return evaluate_predictions(preds, [t.query_y for t in tasks])["mae"]


def episode_sampler(data: PreparedData, config: TrainingConfig) -> EpisodeSampler:
    """The seeded stream of meta-batches (keyed by the global step; the same on every rank)."""
    return EpisodeSampler.of_users(
        data.source,
        data.split.train_users,
        batch_size=config.meta_batch_size,
        query_size=config.query_size,
        support_min=config.train_support_min,
        support_max=config.train_support_max,
        max_ratings=config.max_ratings_per_task,
        seed=config.seed,
        stream=EPISODE_STREAM,
    )


def meta_train(
    model: MeLU,
    optimizer: torch.optim.Optimizer,
    data: PreparedData,
    *,
    config: TrainingConfig,
    inner: InnerLoop,
    state: TrainState,
    best: dict[str, torch.Tensor] | None,
    checkpoints: Checkpointing,
    device: torch.device,
    on_progress: ProgressCallback | None,
    ranks: Ranks | None = None,
) -> TrainState:
    """Meta-train ``model`` from ``state`` on; load its best validation weights at the end.

    With ``ranks`` of several processes, each trains on its part of the step's meta-batch and
    the gradients are all-reduced; rank 0 validates (the score is broadcast, so every rank
    decides alike) and writes the checkpoints.

    Returns:
        The final state (steps, best step and MAE, early stop, validation history).
    """
    ranks = ranks or Ranks(device=device)
    sync = ranks.gradient_sync(config.algorithm)
    sampler = episode_sampler(data, config)
    val_tasks = validation_tasks(data, config)
    adapted = AdaptedModel(model, inner, config.algorithm is Algorithm.METASGD)
    keeper = state.best_on_validation(best, patience=config.patience)
    val_mae = state.history[-1]["val_mae"] if state.history else None
    while state.step < config.max_steps and not state.stopped_early and len(sampler):
        batch = collate(ranks.part_of(sampler.tasks(state.step))).to(device)
        model.train()
        loss = meta_step(
            model, optimizer, batch, algorithm=config.algorithm, inner=inner, sync=sync
        )
        state.step += 1
        if val_tasks and state.step % config.eval_every == 0:
            val_mae = ranks.from_main(lambda: validation_mae(adapted, val_tasks, device))
            state.history.append({"step": state.step, "meta_loss": loss, "val_mae": val_mae})
            state.record(keeper, improved=keeper.observe(state.step, val_mae, model))
        checkpoint_due = state.step % config.checkpoint_every == 0 or state.stopped_early
        if checkpoint_due and ranks.is_main:
            save_checkpoint(
                checkpoints.directory,
                run_key=checkpoints.run_key,
                state=state,
                model=model,
                best=keeper.weights,
                optimizer=optimizer,
            )
        if on_progress:
            on_progress(ProgressEvent("meta", state.step, config.max_steps, loss, val_mae))
    keeper.restore(model)
    return state

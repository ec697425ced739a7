"""The meta-training component: validated training set in, model artifact out.

``train`` checks the validation record, splits users, encodes features, trains the non-meta
global model, meta-trains (checkpointing every N steps, early stopping on validation users),
fits the meta-learned factor fold-in, evaluates every method on the held-out users of every
scenario, and writes the artifact.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from metarec.errors import DeviceError
from metarec.features.training_set import TrainingSetManifest, load_training_set
from metarec.learning.algorithms import Algorithm, InnerLoop, meta_step
from metarec.learning.baselines import BiasModel
from metarec.learning.factor_model import FactorModel
from metarec.learning.global_model import fit_global
from metarec.learning.metrics import evaluate_predictions
from metarec.learning.model import MeLU
from metarec.learning.tasks import collate
from metarec.training.artifact import (
    ModelCard,
    RankerParts,
    code_version,
    now,
    save_artifact,
)
from metarec.training.checkpoint import TrainState, load_checkpoint, save_checkpoint
from metarec.training.config import TrainingConfig
from metarec.training.encoding import FeatureEncoder
from metarec.training.factor_training import (
    FactorTrainingConfig,
    FactorTrainingReport,
    fit_factor_model,
)
from metarec.training.methods import AdaptedModel, adapted_predictions, evaluate_tasks
from metarec.training.ranking import RankerTraining, RankingData, ranker_config_for
from metarec.training.ranking_eval import Cells, RankingRun, train_and_evaluate_ranking
from metarec.training.scenarios import Scenario, Split, TaskSource, parse_support_size, plan_split
from metarec.validation.record import require_passed


@dataclass(frozen=True)
class ProgressEvent:
    """One report from the training loop."""

    phase: str  # "global", "meta", "factor", "ranker", "evaluate"
    step: int
    total: int
    meta_loss: float | None = None
    val_mae: float | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "--device cuda was requested but no CUDA device is available.",
            fix="use --device auto or --device cpu, or run on a machine with a GPU.",
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class PreparedData:
    """A training set cut into splits, encoded, with its task source and bias baselines."""

    df: pd.DataFrame
    split: Split
    encoder: FeatureEncoder
    source: TaskSource
    bias: BiasModel
    train_rows: np.ndarray
    mean_rating: float


def prepare(
    df: pd.DataFrame, *, split: Split, encoder: FeatureEncoder | None, config: TrainingConfig
) -> PreparedData:
    """Encode ``df`` and build the task source, fitting the encoder when none is given."""
    new_item = split.is_new_item(df["release_year"])
    known = df["user_id"].isin(split.train_users).to_numpy() & ~new_item
    if encoder is None:
        encoder = FeatureEncoder.fit(
            df,
            id_rows=df[known],
            use_user_id=config.use_user_id,
            use_item_id=config.use_item_id,
            min_users=config.min_users_per_value,
            min_item_ratings=config.min_item_ratings,
        )
    source = TaskSource(
        x=encoder.encode(df),
        y=df["rating"].to_numpy(np.float32),
        user_ids=df["user_id"].to_numpy(np.int64),
        item_ids=df["item_id"].to_numpy(np.int64),
        new_item=new_item,
    )
    train_rows = np.flatnonzero(known)
    bias = BiasModel.fit(source.item_ids[train_rows], source.y[train_rows])
    return PreparedData(
        df=df,
        split=split,
        encoder=encoder,
        source=source,
        bias=bias,
        train_rows=train_rows,
        mean_rating=float(source.y[train_rows].mean()) if len(train_rows) else 3.5,
    )


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


def run_key(config: TrainingConfig, fingerprint: str) -> str:
    """Identity of a run for resuming: the config (minus device) and the data fingerprint."""
    payload = config.model_dump(mode="json", exclude={"device"})
    return hashlib.sha256(json.dumps([payload, fingerprint], sort_keys=True).encode()).hexdigest()


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

    ``factor`` (the meta-learned factor fold-in) adds the method ``factor_map``.
    """
    metrics: dict = {}
    used: dict[str, list[int]] = {}
    total = len(scenarios) * len(support_sizes)
    done = 0
    for scenario in scenarios:
        chosen = (users or {}).get(scenario.value)
        if chosen is None:
            chosen = data.source.eligible_users(
                scenario, data.split, min_ratings=min_ratings, max_ratings=max_ratings
            )
        used[scenario.value] = [int(u) for u in chosen]
        metrics[scenario.value] = {}
        for size in support_sizes:
            tasks = data.source.evaluation_tasks(
                scenario, chosen, support_size=parse_support_size(size), seed=data.split.seed
            )
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


def train(
    training_set: Path,
    *,
    config: TrainingConfig,
    out: Path,
    checkpoint_dir: Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> ModelCard:
    """Meta-train on a validated training set and write the artifact to ``out``.

    Args:
        training_set: Parquet training set built by Feast (with manifest and validation record).
        config: Hyper-parameters.
        out: Artifact directory to write.
        checkpoint_dir: Where checkpoints go (default ``<out>.checkpoints``); an existing
            checkpoint of the same run is resumed. It is removed once the artifact is written.
        on_progress: Called with :class:`ProgressEvent` during training.

    Returns:
        The model card written with the artifact.

    Raises:
        TrainingSetNotValidatedError: The training set has no passing validation record.
        CheckpointError: The checkpoint belongs to another run.
        DeviceError: CUDA was requested but is absent.
    """
    training_set = Path(training_set)
    df, manifest = load_training_set(training_set)
    record = require_passed(training_set, fingerprint=manifest.fingerprint)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    split = plan_split(
        df,
        seed=config.seed if config.split_seed is None else config.split_seed,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        new_item_fraction=config.new_item_fraction,
        n_folds=config.n_folds,
        test_fold=config.test_fold,
    )
    data = prepare(df, split=split, encoder=None, config=config)
    global_model, model = build_models(data, config)
    global_model.to(device)
    x_train = data.source.x[data.train_rows]
    y_train = data.source.y[data.train_rows]
    fit_global(
        global_model,
        x_train,
        y_train,
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
    if config.init_from_global:
        model.load_state_dict(global_model.state_dict(), strict=False)
    model.to(device)
    outer_params = [
        p
        for name, p in model.named_parameters()
        if config.meta_train_embeddings or not name.startswith(("fields.", "genres."))
    ]
    optimizer = torch.optim.AdamW(
        outer_params, lr=config.outer_lr, weight_decay=config.outer_weight_decay
    )
    inner = InnerLoop(steps=config.inner_steps, lr=config.inner_lr)
    key = run_key(config, manifest.fingerprint)
    ckpt_dir = checkpoint_dir or out.with_name(out.name + ".checkpoints")
    state, best = TrainState(), None
    restored = load_checkpoint(ckpt_dir, run_key=key, model=model, optimizer=optimizer)
    if restored is not None:
        state, best = restored
    state = _meta_train(
        model,
        optimizer,
        data,
        config=config,
        inner=inner,
        state=state,
        best=best,
        ckpt_dir=ckpt_dir,
        run_key=key,
        device=device,
        on_progress=on_progress,
    )
    factor, factor_card = (
        fit_factor(data, config=config, device=device, on_progress=on_progress)
        if config.factor_model
        else (None, None)
    )
    use_meta_sgd = config.algorithm is Algorithm.METASGD
    metrics, users = evaluate_all(
        data,
        meta={config.algorithm.value: AdaptedModel(model, inner, use_meta_sgd)},
        global_model=global_model,
        finetune=InnerLoop(steps=config.finetune_steps, lr=config.finetune_lr),
        scenarios=tuple(config.scenarios),
        support_sizes=tuple(config.support_sizes),
        users=None,
        min_ratings=config.min_ratings,
        max_ratings=config.max_ratings,
        device=device,
        on_progress=on_progress,
        factor=factor,
    )
    fields = _card_fields(config, manifest, record.result_id, data, state, metrics, users)
    fields["factor_model"] = factor_card
    parts = None
    if config.ranker:
        run = rank_catalogue(
            data,
            config=config,
            rating_model=AdaptedModel(model.cpu(), inner, use_meta_sgd),
            device=device,
            on_progress=on_progress,
            users=users,  # the card's test users: what the gate re-evaluates production on
        )
        fields.update(ranking=run.table, ranker=run.card)
        parts = RankerParts(model=run.served.model, ease=run.served.ease, item_ids=run.item_ids)
    card = save_artifact(
        out,
        model=model.cpu(),
        global_model=global_model.cpu(),
        card=fields,
        ranker=parts,
        factor_model=None if factor is None else factor.cpu(),
    )
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # the run is complete; nothing to resume
    return card


def factor_settings(config: TrainingConfig) -> FactorTrainingConfig:
    """The factor fold-in's training settings from the training config (others: defaults)."""
    return FactorTrainingConfig(
        pretrain_steps=config.factor_pretrain_steps,
        meta_steps=config.factor_max_steps,
        seed=config.seed,
    )


def fit_factor(
    data: PreparedData,
    *,
    config: TrainingConfig,
    device: torch.device,
    on_progress: ProgressCallback | None = None,
) -> tuple[FactorModel, dict]:
    """Fit the meta-learned factor fold-in; returns it and its model-card entry.

    The entry holds its training settings and report; the artifact adds its architecture.
    """
    settings = factor_settings(config)
    report = FactorTrainingReport()
    model = fit_factor_model(
        data.source,
        data.split,
        data.encoder,
        config=settings,
        device=device,
        on_progress=(
            lambda step, loss, val: on_progress(
                ProgressEvent("factor", step, settings.meta_steps, loss, val)
            )
        )
        if on_progress
        else None,
        report=report,
    )
    best = None if report.best_val_mae == float("inf") else report.best_val_mae
    entry = {
        "method": "factor_map",
        "training_config": settings.to_dict(),
        "training": {
            "pretrain_loss": None if np.isnan(report.pretrain_loss) else report.pretrain_loss,
            "steps": report.steps,
            "best_step": report.best_step,
            "best_val_mae": best,
        },
    }
    return model, entry


def ranking_data(data: PreparedData) -> RankingData:
    """The ranking view of a prepared training set (catalogue, histories, train matrix)."""
    source = data.source
    return RankingData.build(
        encoder=data.encoder,
        codes=source.x,
        user_ids=source.user_ids,
        item_ids=source.item_ids,
        ratings=source.y,
        new_item_rows=data.split.is_new_item(data.df["release_year"]),
        train_users=data.split.train_users,
    )


def ranker_settings(config: TrainingConfig) -> RankerTraining:
    """The ranker's training settings from the training config."""
    return RankerTraining(
        dim=config.ranker_dim,
        inner_steps=config.ranker_inner_steps,
        inner_lr_init=config.ranker_inner_lr,
        outer_lr=config.ranker_outer_lr,
        max_steps=config.ranker_max_steps,
        batch_size=config.ranker_batch_size,
        eval_every=config.ranker_eval_every,
        seed=config.seed,
    )


def rank_catalogue(
    data: PreparedData,
    *,
    config: TrainingConfig,
    rating_model: AdaptedModel | None,
    device: torch.device,
    on_progress: ProgressCallback | None = None,
    keep_per_user: dict | None = None,
    users: dict[str, list[int]] | None = None,
) -> RankingRun:
    """Train the catalogue ranker and run the ranking protocol on the held-out users.

    ``keep_per_user`` (optional) is filled with per-user NDCG@20 ``[scenario][cell][method]``.
    ``users`` (optional, per scenario) restricts the evaluation, e.g. to the card's
    ``test_users``, so that the gate re-evaluates production on exactly the same users.
    """
    rdata = ranking_data(data)
    return train_and_evaluate_ranking(
        rdata,
        data.split,
        settings=ranker_settings(config),
        ranker_config=ranker_config_for(
            data.encoder, dim=config.ranker_dim, inner_lr_init=config.ranker_inner_lr
        ),
        rating_model=rating_model,
        scenarios=tuple(config.scenarios),
        cells=Cells(orders=tuple(config.ranking_orders), ks=tuple(config.ranking_support_sizes)),
        device=device,
        on_step=(lambda phase, step, total: on_progress(ProgressEvent(phase, step, total)))
        if on_progress
        else None,
        keep_per_user=keep_per_user,
        users=users,
    )


def _card_fields(
    config: TrainingConfig,
    manifest: TrainingSetManifest,
    result_id: str,
    data: PreparedData,
    state: TrainState,
    metrics: dict,
    users: dict[str, list[int]],
) -> dict:
    split = data.split
    return {
        "algorithm": config.algorithm.value,
        "encoder": data.encoder.model_dump(mode="json"),
        "inner_loop": {
            "steps": config.inner_steps,
            "lr": config.inner_lr,
            "meta_sgd": config.algorithm is Algorithm.METASGD,
        },
        "finetune": {"steps": config.finetune_steps, "lr": config.finetune_lr},
        "hyperparameters": config.model_dump(mode="json"),
        "split": {
            "seed": split.seed,
            "new_item_cutoff_year": split.new_item_cutoff_year,
            "n_train_users": len(split.train_users),
            "val_users": split.val_users,
            "test_users": split.test_users,
        },
        "feature_service": manifest.feature_service,
        "feature_service_version": manifest.feature_service_version,
        "dataset_fingerprint": manifest.fingerprint,
        "snapshot_id": manifest.snapshot_id,
        "validation_result_id": result_id,
        "code_version": code_version(),
        "created_at": now(),
        "training": {
            "steps": state.step,
            "best_step": state.best_step,
            "best_val_mae": None if state.best_val_mae == float("inf") else state.best_val_mae,
            "stopped_early": state.stopped_early,
            "history": state.history,
        },
        "metrics": metrics,
        "test_users": users,
    }


def _meta_train(
    model: MeLU,
    optimizer: torch.optim.Optimizer,
    data: PreparedData,
    *,
    config: TrainingConfig,
    inner: InnerLoop,
    state: TrainState,
    best: dict[str, torch.Tensor] | None,
    ckpt_dir: Path,
    run_key: str,
    device: torch.device,
    on_progress: ProgressCallback | None,
) -> TrainState:
    source, split = data.source, data.split
    pool = np.array(
        [u for u in split.train_users if len(source.existing.rows.get(u, ())) > config.query_size]
    )
    val_users = [
        u
        for u in split.val_users
        if config.min_ratings <= len(source.existing.rows.get(u, ())) <= config.max_ratings
    ]
    val_tasks = source.evaluation_tasks(
        Scenario.NEW_USER, val_users, support_size=config.val_support_size, seed=split.seed
    )
    use_meta_sgd = config.algorithm is Algorithm.METASGD

    def validate() -> float:
        preds = adapted_predictions(
            AdaptedModel(model, inner, use_meta_sgd), val_tasks, device=device
        )
        return evaluate_predictions(preds, [t.query_y for t in val_tasks])["mae"]

    val_mae = state.history[-1]["val_mae"] if state.history else None
    while state.step < config.max_steps and not state.stopped_early and len(pool):
        rng = np.random.default_rng([config.seed, 3, state.step])
        users = rng.choice(pool, size=min(config.meta_batch_size, len(pool)), replace=False)
        tasks = source.training_tasks(
            users,
            rng=rng,
            query_size=config.query_size,
            support_min=config.train_support_min,
            support_max=config.train_support_max,
            max_ratings=config.max_ratings_per_task,
        )
        model.train()
        loss = meta_step(
            model, optimizer, collate(tasks).to(device), algorithm=config.algorithm, inner=inner
        )
        state.step += 1
        if val_tasks and state.step % config.eval_every == 0:
            val_mae = validate()
            state.history.append({"step": state.step, "meta_loss": loss, "val_mae": val_mae})
            if val_mae < state.best_val_mae - 1e-5:
                state.best_val_mae, state.best_step, state.bad_evals = val_mae, state.step, 0
                best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                state.bad_evals += 1
                state.stopped_early = state.bad_evals >= config.patience
        if state.step % config.checkpoint_every == 0 or state.stopped_early:
            save_checkpoint(
                ckpt_dir, run_key=run_key, state=state, model=model, best=best, optimizer=optimizer
            )
        if on_progress:
            on_progress(ProgressEvent("meta", state.step, config.max_steps, loss, val_mae))
    if best is not None:
        model.load_state_dict(best)
    return state

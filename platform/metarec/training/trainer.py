"""The meta-training component: validated training set in, model artifact out.

On a training set of implicit events (no ratings), only the catalogue ranker is trained, on
each user's positive interactions (:mod:`~metarec.training.implicit`): the artifact has no
rating model and the card no rating metrics (``label: event``).

``train`` checks the validation record, splits users, encodes features, trains the non-meta
global model, meta-trains (checkpointing every N steps, early stopping on validation users),
fits the meta-learned factor fold-in, evaluates every method on the held-out users of every
scenario, trains the catalogue ranker, and writes the artifact. Under ``torchrun`` every rank
meta-trains the rating model on its part of each meta-batch
(:mod:`~metarec.training.distributed`); rank 0 alone does the rest and writes the artifact, and
the others wait for its model card. Each step lives in its own
module: :mod:`~metarec.training.preparation`, :mod:`~metarec.training.rating_training`,
:mod:`~metarec.training.factor_training`, :mod:`~metarec.training.methods`,
:mod:`~metarec.training.ranking_eval`, :mod:`~metarec.training.card_fields`,
:mod:`~metarec.training.artifact`.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from metarec.errors import DeviceError, ModelInputsError
from metarec.features.training_set import (
    Location,
    TrainingSetManifest,
    as_location,
    load_training_set,
)
from metarec.learning.algorithms import InnerLoop
from metarec.learning.factor_model import FactorModel
from metarec.training.artifact import ModelCard, RankerParts, save_artifact
from metarec.training.card_fields import card_fields, factor_card_entry
from metarec.training.checkpoint import Checkpointing, TrainState, run_key
from metarec.training.config import TrainingConfig
from metarec.training.distributed import Ranks, process_group
from metarec.training.drift_profile import drift_reference_files
from metarec.training.factor_settings import FactorTrainingConfig, FactorTrainingReport
from metarec.training.factor_training import fit_factor_model
from metarec.training.implicit import is_event_training_set
from metarec.training.methods import AdaptedModel, evaluate_all, scenario_users
from metarec.training.preparation import (
    PreparedData,
    config_split,
    interactions,
    prepare,
    ranking_data,
)
from metarec.training.progress import ProgressCallback, ProgressEvent
from metarec.training.ranker_training import RankerTraining
from metarec.training.ranking import Cells, ranker_config_for
from metarec.training.ranking_eval import RankingRun, train_and_evaluate_ranking
from metarec.training.rating_training import RatingModels, build_models, train_rating_models
from metarec.validation.record import require_passed

__all__ = [
    "ProgressCallback",
    "ProgressEvent",
    "build_models",
    "factor_settings",
    "fit_factor",
    "prepare",
    "rank_catalogue",
    "ranker_settings",
    "ranking_data",
    "resolve_device",
    "seed_everything",
    "train",
]


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


def train(
    training_set: Location,
    *,
    config: TrainingConfig,
    out: Path,
    checkpoint_dir: Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> ModelCard:
    """Meta-train on a validated training set and write the artifact to ``out``.

    Args:
        training_set: Parquet training set built by Feast (with manifest and validation record):
            a path or an fsspec URI (``s3://…``).
        config: Hyper-parameters.
        out: Artifact directory to write.
        checkpoint_dir: Where checkpoints go (default ``<out>.checkpoints``); an existing
            checkpoint of the same run is resumed. It is removed once the artifact is written.
        on_progress: Called with :class:`ProgressEvent` during training (on rank 0 only
            under ``torchrun``).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the process joins the job's process group for the
    run; only rank 0 writes checkpoints and the artifact.

    Returns:
        The model card written with the artifact (on every rank).

    Raises:
        TrainingSetNotValidatedError: The training set has no passing validation record.
        CheckpointError: The checkpoint belongs to another run.
        DeviceError: CUDA was requested but is absent.
    """
    training_set = as_location(training_set)
    raw, manifest = load_training_set(training_set)
    record = require_passed(training_set, fingerprint=manifest.fingerprint)
    events = is_event_training_set(raw)
    _require_ranker_for_events(events, config)
    ranks = Ranks.from_environment(resolve_device(config.device))
    seed_everything(config.seed)
    inputs = manifest.input_fields or None  # None: a training set recorded before them
    df = interactions(raw)
    data = prepare(df, split=config_split(df, config), encoder=None, config=config, inputs=inputs)
    train_on = _train_on_events if events else _train_on_ratings
    with process_group(ranks):
        return train_on(
            data,
            manifest,
            record.result_id,
            config=config,
            ranks=ranks,
            out=out,
            on_progress=on_progress if ranks.is_main else None,
            checkpoint_dir=checkpoint_dir,
        )


def _card_of_main(ranks: Ranks, card: ModelCard | None) -> ModelCard:
    """Rank 0's ``card`` (once it wrote the artifact) on every rank: the others wait for it."""
    shared = ranks.bytes_from_main(None if card is None else card.model_dump_json().encode())
    return card or ModelCard.model_validate_json(shared or b"")


def _require_ranker_for_events(events: bool, config: TrainingConfig) -> None:
    """Implicit events train the ranker alone: refuse a config that turns it off."""
    if events and not config.ranker:
        raise ModelInputsError(
            "The training set holds implicit events, which only the catalogue ranker learns "
            "from, but the training config turns the ranker off (ranker: false).",
            fix="set ranker: true in the training config (the default).",
        )


def _train_on_ratings(
    data: PreparedData,
    manifest: TrainingSetManifest,
    result_id: str,
    *,
    config: TrainingConfig,
    ranks: Ranks,
    out: Path,
    on_progress: ProgressCallback | None,
    checkpoint_dir: Path | None,
) -> ModelCard:
    """The rating models (on every rank), then on rank 0 the rest and the artifact."""
    checkpoints = Checkpointing(
        checkpoint_dir or out.with_name(out.name + ".checkpoints"),
        run_key(config, manifest.fingerprint),
    )
    device = ranks.device
    rating = train_rating_models(
        data,
        config=config,
        device=device,
        checkpoints=checkpoints,
        on_progress=on_progress,
        ranks=ranks,
    )
    if not ranks.is_main:
        return _card_of_main(ranks, None)
    factor, factor_entry = _fit_factor_model(
        data, config=config, device=device, on_progress=on_progress
    )
    metrics, users = _evaluate(
        data, rating, factor, config=config, device=device, on_progress=on_progress
    )
    fields = card_fields(config, manifest, result_id, data, rating.state, metrics, users)
    fields.update(factor_model=factor_entry)
    run = _rank_for_card(data, rating, users, config=config, device=device, on_progress=on_progress)
    if run is not None:
        fields.update(ranking=run.table, ranker=run.card)
    card = save_artifact(
        out,
        model=rating.model.cpu(),
        global_model=rating.global_model.cpu(),
        card=fields,
        ranker=None if run is None else stored_ranker(run, data),
        factor_model=None if factor is None else factor.cpu(),
        extras=drift_reference_files(data.df, config, manifest),
    )
    shutil.rmtree(checkpoints.directory, ignore_errors=True)  # complete: nothing to resume
    return _card_of_main(ranks, card)


def stored_ranker(run: RankingRun, data: PreparedData) -> RankerParts:
    """The run's served ranker as the artifact stores it: its catalogue by original item id."""
    parts = run.parts()
    if data.ids.items is None:
        return parts
    return replace(parts, item_ids=np.asarray(data.ids.items_of(parts.item_ids), dtype=object))


def _train_on_events(
    data: PreparedData,
    manifest: TrainingSetManifest,
    result_id: str,
    *,
    config: TrainingConfig,
    ranks: Ranks,
    out: Path,
    on_progress: ProgressCallback | None,
    checkpoint_dir: Path | None = None,
) -> ModelCard:
    """The ranker alone, on positive interactions: no rating model, no rating metrics.

    The card's test users are the split's held-out users each scenario would evaluate (the gate
    re-evaluates production on the same users); its ``metrics`` are empty and its ranking table
    is the evaluation. The ranker has no checkpoints (``checkpoint_dir`` is unused); under
    ``torchrun`` rank 0 trains it while the others wait.
    """
    del checkpoint_dir
    if not ranks.is_main:
        return _card_of_main(ranks, None)
    users = {
        scenario.value: scenario_users(
            data,
            scenario,
            None,
            min_ratings=config.min_ratings,
            max_ratings=config.max_ratings,
        )
        for scenario in config.scenarios
    }
    run = rank_catalogue(
        data,
        config=config,
        rating_model=None,
        device=ranks.device,
        on_progress=on_progress,
        users=users,
    )
    fields = card_fields(config, manifest, result_id, data, TrainState(), {}, users)
    fields.update(ranking=run.table, ranker=run.card)
    card = save_artifact(
        out,
        model=None,
        global_model=None,
        card=fields,
        ranker=stored_ranker(run, data),
        extras=drift_reference_files(data.df, config, manifest),
    )
    return _card_of_main(ranks, card)


def _fit_factor_model(
    data: PreparedData,
    *,
    config: TrainingConfig,
    device: torch.device,
    on_progress: ProgressCallback | None,
) -> tuple[FactorModel | None, dict | None]:
    """The factor fold-in and its card entry (None, None when it is off)."""
    if not config.factor_model:
        return None, None
    return fit_factor(data, config=config, device=device, on_progress=on_progress)


def _rank_for_card(
    data: PreparedData,
    rating: RatingModels,
    users: dict[str, list[int]],
    *,
    config: TrainingConfig,
    device: torch.device,
    on_progress: ProgressCallback | None,
) -> RankingRun | None:
    """The catalogue ranker's run (None with ``ranker`` off), evaluated on the card's users.

    ``users`` are the card's test users: the gate re-evaluates production on the same users.
    The rating model moves to the CPU, where the ranking protocol scores it.
    """
    if not config.ranker:
        return None
    rating.model.cpu()
    return rank_catalogue(
        data,
        config=config,
        rating_model=rating.adapted(),
        device=device,
        on_progress=on_progress,
        users=users,
    )


def _evaluate(
    data: PreparedData,
    rating: RatingModels,
    factor: FactorModel | None,
    *,
    config: TrainingConfig,
    device: torch.device,
    on_progress: ProgressCallback | None,
) -> tuple[dict, dict[str, list[int]]]:
    """Every method on the protocol's held-out users of every scenario (the card's metrics)."""
    return evaluate_all(
        data,
        meta={config.algorithm.value: rating.adapted()},
        global_model=rating.global_model,
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
    return model, factor_card_entry(settings, report)


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
        cold_start_share=config.ranker_cold_start_share,
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
        on_step=(
            lambda phase, step, total, score=None: on_progress(
                ProgressEvent(phase, step, total, val_ndcg=score)
            )
        )
        if on_progress
        else None,
        keep_per_user=keep_per_user,
        users=users,
    )

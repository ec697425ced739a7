"""The model card's fields that a training run writes (lineage, split, training report).

:func:`metarec.training.artifact.save_artifact` adds the architecture, the weights' checksums
and the format version when it writes ``model_card.json``.
"""

from __future__ import annotations

import numpy as np

from metarec.clock import utc_now
from metarec.features.training_set import TrainingSetManifest
from metarec.learning.algorithms import Algorithm
from metarec.training.checkpoint import TrainState
from metarec.training.config import TrainingConfig
from metarec.training.factor_settings import FactorTrainingConfig, FactorTrainingReport
from metarec.training.model_card import code_version
from metarec.training.preparation import PreparedData


def _finite_or_none(value: float) -> float | None:
    """``None`` for the ``inf`` that stands for "never validated"."""
    return None if value == float("inf") else value


def card_fields(
    config: TrainingConfig,
    manifest: TrainingSetManifest,
    result_id: str,
    data: PreparedData,
    state: TrainState,
    metrics: dict,
    users: dict[str, list[int]],
) -> dict:
    """The card's fields of a run: how it was trained, on what, and how good it is.

    Args:
        config: The run's hyper-parameters.
        manifest: The training set's manifest (lineage).
        result_id: The id of the training set's passing validation result.
        data: The prepared training set (encoder, split).
        state: The meta-training state at the end (steps, early stopping, history).
        metrics: ``{scenario: {size: {method: {metric}}}}`` on the test users.
        users: The test users of each scenario (codes: the card records original ids).
    """
    split, ids = data.split, data.ids
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
            "val_users": ids.users_of(split.val_users),
            "test_users": ids.users_of(split.test_users),
        },
        "feature_service": manifest.feature_service,
        "feature_service_version": manifest.feature_service_version,
        "dataset_fingerprint": manifest.fingerprint,
        "snapshot_id": manifest.snapshot_id,
        "validation_result_id": result_id,
        "code_version": code_version(),
        "created_at": utc_now(),
        "training": {
            "steps": state.step,
            "best_step": state.best_step,
            "best_val_mae": _finite_or_none(state.best_val_mae),
            "stopped_early": state.stopped_early,
            "history": state.history,
        },
        "metrics": metrics,
        "test_users": {scenario: ids.users_of(chosen) for scenario, chosen in users.items()},
    }


def factor_card_entry(settings: FactorTrainingConfig, report: FactorTrainingReport) -> dict:
    """The card's ``factor_model`` entry: training settings and report (not the architecture).

    :func:`~metarec.training.artifact.save_artifact` adds the architecture.
    """
    return {
        "method": "factor_map",
        "training_config": settings.to_dict(),
        "training": {
            "pretrain_loss": None if np.isnan(report.pretrain_loss) else report.pretrain_loss,
            "steps": report.steps,
            "best_step": report.best_step,
            "best_val_mae": _finite_or_none(report.best_val_mae),
        },
    }

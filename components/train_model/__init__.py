"""Pipeline component: meta-train on a validated training set and write the artifact.

The training set and the artifact are local paths or URIs on an object store (``s3://…``, as the
KFP pipeline passes them): an artifact for a URI is trained locally, then uploaded with its model
card last, so a card at the URI always means a complete artifact.

Idempotent: an artifact already written for the same training-set fingerprint and the same
hyper-parameters (or already at the URI ``out``) is returned as it is; an interrupted run resumes
from its checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metarec.components import component_settings
from pydantic import BaseModel, ConfigDict


class TrainOutput(BaseModel):
    """The trained artifact and its headline numbers (JSON-able)."""

    model_config = ConfigDict(frozen=True)

    artifact: str
    algorithm: str
    dataset_fingerprint: str
    validation_result_id: str
    new_user_mae: float | None
    reused: bool


def _headline_mae(metrics: dict[str, Any], algorithm: str) -> float | None:
    sizes = metrics.get("new_user", {})
    for size in ("10", "all", *sizes):
        if algorithm in sizes.get(size, {}):
            return float(sizes[size][algorithm]["mae"])
    return None


def train_model(
    *,
    training_set: str,
    home: str | None = None,
    config: dict[str, Any] | None = None,
    config_file: str | None = None,
    out: str | None = None,
) -> TrainOutput:
    """Meta-train on ``training_set`` (which must have a passing validation record).

    Args:
        training_set: Parquet training set built by Feast and validated (a path or URI).
        home: MetaRec home (default: the configured one).
        config: Hyper-parameter overrides (``TrainingConfig`` fields).
        config_file: YAML file of hyper-parameters (overrides applied on top).
        out: Artifact folder or URI (default: ``<home>/artifacts/runs/<algorithm>-<fingerprint
            +config hash>``).

    Returns:
        The artifact folder and its lineage.

    Raises:
        TrainingSetNotValidatedError: No passing validation record for this content.
        ConfigError: A hyper-parameter is not valid.
        ArtifactError: The upload to the URI ``out`` did not read back intact.
    """
    from metarec.ops import train_candidate, training_config

    settings = component_settings(home)
    trained = train_candidate(
        settings,
        training_set=training_set,
        config=training_config(
            values=config, config_file=Path(config_file) if config_file else None
        ),
        out=out or None,
    )
    card = trained.card
    return TrainOutput(
        artifact=str(trained.artifact),
        algorithm=str(card.algorithm),
        dataset_fingerprint=card.dataset_fingerprint,
        validation_result_id=card.validation_result_id,
        new_user_mae=_headline_mae(card.metrics, str(card.algorithm)),
        reused=trained.reused,
    )

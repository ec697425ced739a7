"""Retraining: training set → validation → meta-training → gate → registration.

The steps are use cases of their own (the pipeline runs each as a task: Prefect and KFP retry
them one by one); :func:`retrain` runs them in order in this process. A failed validation or a
rejected candidate stops the run: nothing after the failed step runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from metarec.config import Settings
from metarec.errors import MetaRecError
from metarec.features.training_set import (
    Location,
    TrainingSetManifest,
    as_location,
    build_training_set,
    read_manifest,
)
from metarec.ops import notifications
from metarec.ops.locations import publish_artifact, read_artifact_card
from metarec.ops.register import DEFAULT_REASON, RegistrationOutcome, register_candidate
from metarec.registry import Registry
from metarec.training.artifact import ModelCard, read_card
from metarec.training.config import TrainingConfig
from metarec.training.trainer import train
from metarec.validation.gate import raise_for_failure, validate_training_set
from metarec.validation.result import ValidationResult

ProgressCallback = Callable[[Any], None]


class TrainedCandidate(BaseModel):
    """A trained artifact: its folder (or URI), its card, and whether a run had written it."""

    model_config = ConfigDict(frozen=True)

    artifact: Path | str  # a local folder, or a URI on an object store (``s3://…``)
    card: ModelCard
    reused: bool


class RetrainOutcome(BaseModel):
    """What :func:`retrain` produced, step by step."""

    model_config = ConfigDict(frozen=True)

    training_set: TrainingSetManifest
    validation: ValidationResult
    candidate: TrainedCandidate
    registration: RegistrationOutcome


def prepare_training_set(settings: Settings, *, out: Location | None = None) -> TrainingSetManifest:
    """Build the point-in-time ``meta_training`` set of the applied snapshot (Feast).

    Args:
        settings: MetaRec settings (feature repository, home).
        out: Parquet path or URI, its manifest beside it (default:
            ``<home>/training_sets/<snapshot id>.parquet``).
    """
    return build_training_set(settings, out=as_location(out) if out else None)


def check_training_set(
    settings: Settings, *, training_set: Location, now: datetime | None = None
) -> ValidationResult:
    """Validate ``training_set`` (a path or URI) against its suite and reference profile.

    It must pass; the validation record is written beside it (on the store for a URI).

    Raises:
        ValidationFailedError: At least one expectation failed (all are listed).
        ReferenceProfileNotFoundError: No reference profile exists yet.
    """
    result = validate_training_set(settings, training_set=as_location(training_set), now=now)
    raise_for_failure(result)
    return result


def training_config(
    *,
    values: dict[str, Any] | None = None,
    config_file: Path | None = None,
    defaults: dict[str, Any] | None = None,
) -> TrainingConfig:
    """Hyper-parameters: ``defaults``, then a YAML file, then ``values`` on top (all optional).

    Raises:
        ConfigError: The file cannot be read, or a field is not valid (each is named).
    """
    merged: dict[str, Any] = dict(defaults or {})
    if config_file is not None:  # read and checked on its own: its errors name the file
        merged.update(TrainingConfig.from_yaml(config_file).model_dump(exclude_unset=True))
    merged.update(values or {})
    return TrainingConfig.build(merged, source=str(config_file or "training config"))


def run_folder(settings: Settings, *, training_set: Location, config: TrainingConfig) -> Path:
    """The artifact folder of a run: one per training-set fingerprint and hyper-parameters."""
    key = json.dumps(
        {
            "fingerprint": read_manifest(training_set).fingerprint,
            "config": config.model_dump(mode="json"),
        },
        sort_keys=True,
    )
    run = hashlib.sha256(key.encode()).hexdigest()[:16]
    return settings.paths.artifacts / "runs" / f"{config.algorithm}-{run}"


def train_candidate(
    settings: Settings,
    *,
    training_set: Location,
    config: TrainingConfig,
    out: Location | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainedCandidate:
    """Meta-train on a validated training set, or return the artifact a finished run wrote.

    An interrupted run resumes from its checkpoint. An artifact for a URI (``s3://…``) is
    trained into a local staging folder of the home, then uploaded with its model card last
    (:func:`~metarec.ops.locations.publish_artifact`): a card at the URI means a complete
    artifact, which a retried step returns as it is.

    Args:
        settings: MetaRec settings (where artifacts go).
        training_set: A training set with a passing validation record (a path or URI).
        config: Hyper-parameters.
        out: Artifact folder or URI (default: :func:`run_folder`).
        on_progress: Called with each training progress event.

    Raises:
        TrainingSetNotValidatedError: No passing validation record for this content.
        ArtifactError: The upload to ``out`` did not read back intact.
    """
    training_set = as_location(training_set)
    target = (
        as_location(out) if out else run_folder(settings, training_set=training_set, config=config)
    )
    if isinstance(target, str):
        return _train_to_url(settings, training_set, config, target, on_progress)
    if (target / "model_card.json").is_file():
        return TrainedCandidate(artifact=target, card=read_card(target), reused=True)
    card = train(training_set, config=config, out=target, on_progress=on_progress)
    return TrainedCandidate(artifact=target, card=card, reused=False)


def staging_folder(settings: Settings, url: str) -> Path:
    """The local folder an artifact for ``url`` is trained in before its upload."""
    return settings.paths.artifacts / "uploads" / hashlib.sha256(url.encode()).hexdigest()[:16]


def _train_to_url(
    settings: Settings,
    training_set: Path | str,
    config: TrainingConfig,
    url: str,
    on_progress: ProgressCallback | None,
) -> TrainedCandidate:
    """Train into the staging folder (resumed or reused), upload it to ``url``, remove it."""
    card = read_artifact_card(url)
    if card is not None:
        return TrainedCandidate(artifact=url, card=card, reused=True)
    staging = staging_folder(settings, url)
    local = train_candidate(
        settings, training_set=training_set, config=config, out=staging, on_progress=on_progress
    )
    publish_artifact(staging, url)
    shutil.rmtree(staging)
    return TrainedCandidate(artifact=url, card=local.card, reused=False)


def retrain(
    settings: Settings,
    *,
    config: TrainingConfig,
    actor: str,
    model: str | None = None,
    policy: Path | None = None,
    reason: str = DEFAULT_REASON,
    registry: Registry | None = None,
    on_progress: ProgressCallback | None = None,
) -> RetrainOutcome:
    """Build the training set, validate it, train, gate the candidate and register it.

    Args:
        settings: MetaRec settings.
        config: Hyper-parameters of the new candidate.
        actor: Who retrains (kept in the ledger).
        model: Registered model name (default: ``registry.model_name``).
        policy: Gate policy YAML (default: ``registry.gate_policy``, else the shipped one).
        reason: Why (kept in the ledger with the registration).
        registry: An open registry (default: open the configured one for the gate step).
        on_progress: Called with each training progress event.

    Returns:
        Every step's result; ``registration.registered`` is the new staging version, or None
        when the gate rejected the candidate (the rejection is in the ledger).

    Raises:
        ValidationFailedError: The training set failed validation (nothing was trained).
        MetaRecError: Another step failed. Either way ``notifications.webhooks`` are told
            (``retrain_failed``) before the error propagates.
    """
    name = model or settings.registry.model_name
    try:
        return _retrain(
            settings,
            config=config,
            actor=actor,
            model=name,
            policy=policy,
            reason=reason,
            registry=registry,
            on_progress=on_progress,
        )
    except MetaRecError as exc:
        notifications.send(settings, notifications.retrain_failed(model=name, reason=str(exc)))
        raise


def _retrain(
    settings: Settings,
    *,
    config: TrainingConfig,
    actor: str,
    model: str,
    policy: Path | None,
    reason: str,
    registry: Registry | None,
    on_progress: ProgressCallback | None,
) -> RetrainOutcome:
    manifest = prepare_training_set(settings)
    path = as_location(manifest.path)
    validation = check_training_set(settings, training_set=path)
    candidate = train_candidate(settings, training_set=path, config=config, on_progress=on_progress)
    registration = register_candidate(
        settings,
        artifact=candidate.artifact,
        model=model,
        policy=policy,
        training_set=path,
        actor=actor,
        reason=reason,
        registry=registry,
    )
    return RetrainOutcome(
        training_set=manifest,
        validation=validation,
        candidate=candidate,
        registration=registration,
    )

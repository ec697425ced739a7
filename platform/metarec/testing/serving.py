"""Quickly trained, registered models to serve, for tests, benchmarks and demos.

:func:`train_and_register` trains a small model on a training set (recording a passing
validation result for a copy of it when asked, as a test double of the validation gate), gates
it under a permissive policy, registers it and promotes it to production.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from metarec.config import Settings
from metarec.registry.service import Registry
from metarec.registry.types import VersionInfo, VersionRef

T = TypeVar("T")

SMALL_CONFIG: dict[str, Any] = {
    "algorithm": "fomaml",
    "embedding_dim": 8,
    "hidden": [16, 16],
    "max_steps": 40,
    "ranker_max_steps": 30,
    "factor_pretrain_steps": 30,
    "factor_max_steps": 10,
    "ranker_eval_every": 15,
    "ranker_dim": 16,
    "meta_batch_size": 8,
    "inner_steps": 2,
    "eval_every": 20,
    "patience": 10,
    "checkpoint_every": 1000,
    "global_epochs": 1,
    "finetune_steps": 2,
    "min_ratings": 13,
    "max_ratings": 100,
    "scenarios": ["new_user"],
    "support_sizes": ["10"],
    "device": "cpu",
}

PERMISSIVE_POLICY = """
name: permissive
require_same_users: false
absolute:
  - {metric: mae, max: 10.0, cells: mean}
"""
# Also judges a version of implicit events (no rating metrics: its rating rules are skipped, and
# a policy without a ranking rule rejects it); a rating version needs a ranking table.
PERMISSIVE_POLICY_WITH_RANKING = (
    PERMISSIVE_POLICY + "  - {table: ranking, metric: ndcg@20, min: 0.0, cells: mean}\n"
)


def mark_validated(
    training_set: Path,
    target: Path,
    *,
    result_id: str = "result-serving-test",
    ratings: Callable[[np.ndarray], np.ndarray] | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> Path:
    """Copy a training set (with manifest) and record a passing validation result for it.

    Args:
        training_set: Source parquet (its manifest beside it).
        target: Where the copy goes.
        result_id: Id of the recorded validation result.
        ratings: Optional transform of the rating column (a corrupted export, shuffled labels);
            the copy's manifest then carries the fingerprint of the changed content.
        transform: Optional transform of the whole frame (e.g. the ids as a team's text ids),
            applied after ``ratings``; the fingerprint follows the content likewise.
    """
    import pandas as pd

    from metarec.features.fingerprint import dataset_fingerprint
    from metarec.features.training_set import manifest_path, read_manifest
    from metarec.validation.record import ValidationRecord, write_validation_record

    target.parent.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(training_set)
    if ratings is None and transform is None:
        shutil.copy(training_set, target)
    else:
        frame = pd.read_parquet(training_set)
        if ratings is not None:
            frame["rating"] = ratings(frame["rating"].to_numpy())
        if transform is not None:
            frame = transform(frame)
        frame.to_parquet(target, index=False)
        manifest = manifest.model_copy(
            update={"path": str(target), "fingerprint": dataset_fingerprint(frame)}
        )
    manifest_path(target).write_text(manifest.model_dump_json())
    write_validation_record(
        target,
        ValidationRecord(
            result_id=result_id,
            success=True,
            suite_name=manifest.feature_service,
            suite_version="1",
            feature_service=manifest.feature_service,
            feature_service_version=manifest.feature_service_version,
            dataset_fingerprint=manifest.fingerprint,
            failed_expectations=[],
            report_html="",
            result_json="",
            created_at=datetime.now(UTC),
        ),
    )
    return target


def train_and_register(
    settings: Settings,
    training_set: Path,
    *,
    workdir: Path,
    config: dict[str, Any] | None = None,
    promote: bool = True,
) -> VersionInfo:
    """Train a small model, register it (permissive gate) and promote it to production.

    Args:
        settings: The home whose registry receives the version.
        training_set: A validated training set.
        workdir: Scratch folder for the artifact and the policy.
        config: Training config overrides on top of :data:`SMALL_CONFIG`.
        promote: Promote the new version to production.

    Returns:
        The registered version.
    """
    from metarec.gate.policy import load_policy
    from metarec.gate.run import gate_artifact
    from metarec.training.config import TrainingConfig
    from metarec.training.trainer import train

    workdir.mkdir(parents=True, exist_ok=True)
    artifact = workdir / "artifact"
    train(
        training_set,
        config=TrainingConfig.build({**SMALL_CONFIG, **(config or {})}),
        out=artifact,
    )
    policy_file = workdir / "policy.yaml"
    policy_file.write_text(PERMISSIVE_POLICY)
    model = settings.registry.model_name
    with Registry.open(settings) as registry:
        decision = gate_artifact(artifact, policy=load_policy(policy_file), model=model)
        info = registry.register(artifact, model=model, gate_decision=decision, actor="test")
        if promote:
            registry.promote(
                VersionRef(model=model, version=info.version), actor="test", reason="serving"
            )
            info = registry.get_version(VersionRef(model=model, version=info.version))
    return info


def run_with_engine(engine: Any, body: Callable[[], Awaitable[T]]) -> T:
    """Run ``body`` (calls of an adaptation engine) on a fresh event loop.

    The engine's micro-batchers are closed on that loop afterwards.
    """

    async def main() -> T:
        try:
            return await body()
        finally:
            await engine.close()

    return asyncio.run(main())


def metric_sample(engine: Any, name: str) -> float:
    """The value of the engine's Prometheus sample ``name`` for its served version."""
    value = engine.metrics.registry.get_sample_value(name, {"model_version": engine.served.tag})
    assert value is not None, name
    return float(value)

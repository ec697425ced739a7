"""The drift reference travels in the artifact: a serving pod needs no training set.

Training writes ``drift_reference.json`` beside the weights, listed in the card's file hashes
(so inspection and registration verify it); the service reads it from the registry. An older
artifact without it falls back to its training set; without either, one warning.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from metarec.config import load_settings
from metarec.errors import ArtifactError
from metarec.features.training_set import TrainingSetManifest, manifest_path
from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact
from metarec.learning.model import MeLU
from metarec.registry import Registry
from metarec.registry.artifacts import inspect_artifact
from metarec.serving.drift_reference import DRIFT_FILE, DriftReference, served_drift_reference
from metarec.testing.registry import fixture_card, fixture_metrics, fixture_ranking
from metarec.training.artifact import save_artifact
from metarec.training.config import TrainingConfig
from metarec.training.drift_profile import drift_reference_files
from metarec.training.encoding import EncodedField, FeatureEncoder

SEED = 5  # the fixture card's dataset fingerprint is derived from it


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 41), 40)
    return pd.DataFrame(
        {
            "user_id": users,
            "item_id": rng.integers(1, 60, size=len(users)),
            "rating": 4.0,
            "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(np.arange(len(users)), unit="min"),
        }
    )


def _manifest(path: Path, fingerprint: str) -> TrainingSetManifest:
    return TrainingSetManifest(
        path=str(path),
        fingerprint=fingerprint,
        rows=len(_frame()),
        columns=list(_frame().columns),
        feature_service="meta_training",
        feature_service_version="1",
        snapshot_id="snap",
        feast_project="metarec",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )


def _artifact(folder: Path, *, with_reference: bool) -> Path:
    """A small rating artifact written by ``save_artifact``, as training writes it."""
    encoder = FeatureEncoder(
        fields=[
            EncodedField(
                name="gender",
                side="user",
                kind="categorical",
                view="user_profile",
                start=0,
                vocabulary=["F", "M"],
            )
        ]
    )
    card = fixture_card(
        seed=SEED,
        algorithm="maml",
        metrics=fixture_metrics(algorithm="maml", mae=0.8),
        test_users={"new_user": [1]},
        ranking=fixture_ranking(ranker=0.3),
        weights_sha256="0" * 64,
    )
    fields = card.model_dump(exclude={"model", "weights_sha256", "files", "format_version"})
    model = MeLU(
        encoder.model_config_for(
            embedding_dim=4, hidden=(8,), output_bias=3.5, meta_sgd=False, inner_lr_init=0.01
        )
    )
    config = TrainingConfig(train_support_min=4, train_support_max=12, seed=3)
    manifest = _manifest(folder / "ts.parquet", card.dataset_fingerprint)
    extras = drift_reference_files(_frame(), config, manifest) if with_reference else None
    save_artifact(
        folder,
        model=model,
        global_model=None,
        card={**fields, "encoder": encoder.model_dump()},
        extras=extras,
    )
    return folder


def _register(home: Path, artifact: Path):
    settings = load_settings(home=home)
    with Registry.open(settings) as registry:
        decision = gate_artifact(artifact, policy=load_policy(), model="metarec", registry=registry)
        info = registry.register(artifact, model="metarec", gate_decision=decision, actor="test")
    return settings, info


def test_the_artifact_carries_a_verified_reference(tmp_path: Path):
    artifact = _artifact(tmp_path / "artifact", with_reference=True)
    manifest = inspect_artifact(artifact)
    assert DRIFT_FILE in manifest.card.files and DRIFT_FILE in manifest.files
    reference = DriftReference.model_validate_json((artifact / DRIFT_FILE).read_bytes())
    assert reference.support_range == (4, 12)  # the training config's support range
    assert "ts.parquet" in reference.source
    (artifact / DRIFT_FILE).write_text((artifact / DRIFT_FILE).read_text().replace("4", "5"))
    with pytest.raises(ArtifactError, match=DRIFT_FILE):
        inspect_artifact(artifact)  # changed after training: refused


def test_a_service_reads_the_reference_from_the_registry_without_a_training_set(
    tmp_path: Path, caplog
):
    artifact = _artifact(tmp_path / "artifact", with_reference=True)
    written = DriftReference.model_validate_json((artifact / DRIFT_FILE).read_bytes())
    settings, info = _register(tmp_path / "home", artifact)
    assert not settings.paths.training_sets.exists() or not any(
        settings.paths.training_sets.iterdir()
    )
    card = inspect_artifact(artifact).card
    with caplog.at_level(logging.WARNING):
        found = served_drift_reference(settings, info=info, card=card)
    assert found == written
    assert "drift" not in caplog.text


def test_an_older_artifact_falls_back_to_its_training_set_else_warns_once(tmp_path: Path, caplog):
    artifact = _artifact(tmp_path / "artifact", with_reference=False)
    settings, info = _register(tmp_path / "home", artifact)
    card = inspect_artifact(artifact).card
    assert DRIFT_FILE not in info.files
    with caplog.at_level(logging.WARNING):
        assert served_drift_reference(settings, info=info, card=card) is None
    assert len([r for r in caplog.records if "drift" in r.message]) == 1
    folder = settings.paths.training_sets
    folder.mkdir(parents=True, exist_ok=True)
    _frame().to_parquet(folder / "ts.parquet", index=False)
    manifest = _manifest(folder / "ts.parquet", card.dataset_fingerprint)
    manifest_path(folder / "ts.parquet").write_text(manifest.model_dump_json())
    found = served_drift_reference(settings, info=info, card=card)
    assert found is not None and "ts.parquet" in found.source

"""The model card is typed on read: artifact folders, the stored card and the stored file."""

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from metarec.digests import sha256_bytes
from metarec.errors import ArtifactError
from metarec.registry import Registry, VersionRef
from metarec.registry.artifacts import inspect_artifact
from metarec.training.artifact import ModelCard, read_card

V1 = VersionRef(model="metarec", version=1)


def edit_card(folder: Path, **changes) -> None:
    card = json.loads((folder / "model_card.json").read_text())
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    (folder / "model_card.json").write_text(json.dumps(card))


def test_fixture_cards_are_valid_training_cards(artifact):
    folder = artifact(seed=3)
    card = read_card(folder)  # the trainer's own reader validates it
    assert card.dataset_fingerprint == f"sha256:{3:064x}"
    assert card.files == {"model.safetensors": card.weights_sha256}


def test_inspect_parses_the_card_into_a_model_card(artifact):
    manifest = inspect_artifact(artifact(ranker_ndcg=None))
    assert isinstance(manifest.card, ModelCard)
    assert manifest.card.algorithm == "maml"
    assert manifest.card.ranking == {}
    assert manifest.card.code_version == {"metarec": "0.1.0+test", "git_commit": None}


def test_a_partial_card_is_refused_naming_the_fields(artifact):
    folder = artifact()
    edit_card(folder, training=None, code_version="0.1.0")
    with pytest.raises(ArtifactError, match="not a valid model card") as caught:
        inspect_artifact(folder)
    assert "training: field required" in str(caught.value)
    assert "code_version" in str(caught.value)
    assert "metarec train" in caught.value.fix


def test_unknown_fields_and_format_versions_are_refused(artifact):
    folder = artifact()
    edit_card(folder, architecture={"hidden": [4]})
    with pytest.raises(ArtifactError, match="architecture: extra inputs are not permitted"):
        inspect_artifact(folder)
    edit_card(folder, architecture=None, format_version=2)
    with pytest.raises(ArtifactError, match="format_version 2; this MetaRec reads 1"):
        inspect_artifact(folder)
    (folder / "model_card.json").write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="is not a JSON object"):
        inspect_artifact(folder)


def test_registry_reads_the_stored_card_file_typed(registry, register):
    register(seed=7)
    card = registry.read_card(V1)
    assert isinstance(card, ModelCard)
    assert card.validation_result_id == "validation-7"


def test_an_old_stored_card_keeps_the_lineage_columns_and_says_why(registry: Registry, register):
    register(seed=4)
    with registry.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE registry_versions SET card = :card"),
            {"card": json.dumps({"algorithm": "maml", "metrics": {"new_user": {}}})},
        )
    info = registry.get_version(V1)
    assert info.lineage.algorithm == "maml"
    assert info.lineage.dataset_fingerprint == f"sha256:{4:064x}"
    assert info.lineage.metrics == {} and info.lineage.training_config == {}
    assert "model card stored with metarec:v1" in info.lineage.card_error
    assert "format_version None" in info.lineage.card_error
    assert "re-register" in info.lineage.card_error
    assert [v.version for v in registry.list_versions("metarec")] == [1]


def test_a_good_stored_card_has_no_card_error(registry, register):
    info = register()
    assert info.lineage.card_error is None
    assert info.lineage.trained_at == "2026-12-01T00:00:00+00:00"
    expected = {"hyperparameters", "model", "inner_loop", "finetune", "split", "training"}
    assert set(info.lineage.training_config) == expected
    assert "history" not in info.lineage.training_config["training"]
    assert "test_users" not in info.lineage.training_config["split"]


def test_an_old_stored_card_file_is_a_clear_error(registry: Registry, register):
    info = register()
    old = json.dumps({"format_version": 1, "algorithm": "maml"}).encode()
    stored = Path(info.artifact_uri.removeprefix("file://")) / "model_card.json"
    stored.write_bytes(old)
    files = {**info.files, "model_card.json": sha256_bytes(old)}
    with registry.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE registry_versions SET files = :files"), {"files": json.dumps(files)}
        )
    with pytest.raises(ArtifactError, match=r"metarec:v1/model_card\.json is not a valid model"):
        registry.read_card(V1)

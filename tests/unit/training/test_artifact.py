from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from metarec.digests import sha256_file
from metarec.errors import ArtifactError, MetaRecError
from metarec.learning.model import MeLU, ModelConfig
from metarec.training.artifact import (
    CARD,
    GLOBAL_WEIGHTS,
    WEIGHTS,
    load_artifact,
    load_global_model,
    save_artifact,
)

CONFIG = ModelConfig(
    field_names=("gender", "occupation"),
    field_sizes=(3, 5),
    bags=((4, 2),),
    embedding_dim=4,
    hidden=(8,),
)


def card_fields() -> dict:
    return {
        "algorithm": "maml",
        "encoder": {"field_names": ["gender", "occupation"]},
        "inner_loop": {"steps": 2, "lr": 0.05, "meta_sgd": False},
        "finetune": {"steps": 2, "lr": 0.05},
        "hyperparameters": {},
        "split": {"seed": 0},
        "feature_service": "meta_training",
        "feature_service_version": "abc",
        "dataset_fingerprint": "sha256:00",
        "snapshot_id": "snap",
        "validation_result_id": "r1",
        "code_version": {"metarec": "0.1.0", "git_commit": None},
        "created_at": datetime.now(UTC),
        "training": {},
        "metrics": {"new_user": {"5": {"maml": {"mae": 0.7}}}},
        "test_users": {"new_user": [1, 2]},
    }


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[Path, MeLU]:
    torch.manual_seed(0)
    model, global_model = MeLU(CONFIG), MeLU(CONFIG)
    save_artifact(tmp_path / "art", model=model, global_model=global_model, card=card_fields())
    return tmp_path / "art", model


def test_save_load_gives_identical_predictions(artifact):
    path, model = artifact
    loaded, card = load_artifact(path)
    x = torch.tensor([[1, 2, 1, 3], [2, 4, 2, 0]])
    assert torch.equal(model(x), loaded(x))
    assert card.weights_sha256 == sha256_file(path / WEIGHTS)
    assert card.files[GLOBAL_WEIGHTS] == sha256_file(path / GLOBAL_WEIGHTS)
    assert load_global_model(path, card) is not None
    data = json.loads((path / CARD).read_text())
    for key in (
        "format_version",
        "algorithm",
        "feature_service",
        "dataset_fingerprint",
        "validation_result_id",
        "code_version",
        "created_at",
        "metrics",
        "test_users",
        "model",
        "encoder",
    ):
        assert key in data


def test_tampered_weights_are_rejected(artifact):
    path, _ = artifact
    raw = bytearray((path / WEIGHTS).read_bytes())
    raw[-1] ^= 0xFF
    (path / WEIGHTS).write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="does not match the model card"):
        load_artifact(path)


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(_Payload.marker),))


def test_pickle_in_place_of_weights_is_rejected_without_running_it(artifact, tmp_path):
    path, _ = artifact
    marker = tmp_path / "pwned"
    _Payload.marker = str(marker)
    (path / WEIGHTS).write_bytes(pickle.dumps({"w": _Payload()}))
    # an attacker who also rewrites the card's checksum still gets a clear error
    card = json.loads((path / CARD).read_text())
    card["weights_sha256"] = card["files"][WEIGHTS] = sha256_file(path / WEIGHTS)
    (path / CARD).write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="not a safetensors file") as info:
        load_artifact(path)
    assert "Fix:" in str(info.value)
    assert not marker.exists()


def test_torch_save_file_is_rejected(artifact):
    path, model = artifact
    torch.save(model.state_dict(), path / WEIGHTS)
    with pytest.raises(ArtifactError):
        load_artifact(path)


def test_missing_or_foreign_card(tmp_path, artifact):
    with pytest.raises(ArtifactError, match=r"no model_card\.json"):
        load_artifact(tmp_path / "nothing")
    path, _ = artifact
    (path / CARD).write_text("{not json")
    with pytest.raises(MetaRecError, match="not a JSON model card"):
        load_artifact(path)
    (path / CARD).write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ArtifactError, match="format_version"):
        load_artifact(path)


def test_weights_that_do_not_fit_the_card(artifact):
    path, _ = artifact
    card = json.loads((path / CARD).read_text())
    card["model"]["hidden"] = [16]
    (path / CARD).write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="do not fit"):
        load_artifact(path)

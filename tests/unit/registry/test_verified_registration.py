"""Registration checks every file against the card's hashes (issue 20, item 6).

A version whose weights do not match its card used to register, be promoted, then crash-loop
when served. Registration, the gate and ``Registry.verify`` (which ``metarec serve`` runs before
it starts the server) now refuse it, naming the file and the fix.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch
from metarec.digests import sha256_file
from metarec.errors import ArtifactError
from metarec.gate.decision import decide
from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact
from metarec.registry import Registry, VersionRef
from metarec.registry.artifacts import inspect_artifact, manifest_digest
from metarec.testing.registry import fixture_metrics, fixture_ranking
from safetensors.torch import save_file

V1 = VersionRef(model="metarec", version=1)
MISMATCH = r"model\.safetensors: sha256 [0-9a-f]{64} does not match the model card"


def replace_weights(path: Path, *, seed: int = 99) -> None:
    """Valid safetensors weights of the same shape, other values (not what the card hashed)."""
    generator = torch.Generator().manual_seed(seed)
    save_file(
        {
            "decision.0.weight": torch.randn(4, 3, generator=generator),
            "decision.0.bias": torch.zeros(4),
        },
        str(path),
    )


def forged_decision(folder: Path):
    """An accepted decision made for exactly ``folder``'s digest, without the gate's checks."""
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p) for p in folder.rglob("*") if p.is_file()
    }
    return decide(
        load_policy(),
        model="metarec",
        artifact_digest=manifest_digest(files),
        candidate_metrics=fixture_metrics(),
        candidate_method="maml",
        candidate_ranking=fixture_ranking(),
        decided_at=datetime(2026, 12, 1, tzinfo=UTC),
    )


def test_weights_that_do_not_match_the_card_are_refused_everywhere(registry, artifact):
    folder = artifact()
    replace_weights(folder / "model.safetensors")
    with pytest.raises(ArtifactError, match=MISMATCH) as raised:
        inspect_artifact(folder)
    assert "Fix: register the folder exactly as `metarec train` wrote it" in str(raised.value)
    with pytest.raises(ArtifactError, match=MISMATCH):
        gate_artifact(folder, policy=load_policy(), model="metarec", registry=registry)
    decision = forged_decision(folder)
    assert decision.accepted
    with pytest.raises(ArtifactError, match=MISMATCH):
        registry.register(folder, model="metarec", gate_decision=decision, actor="t")
    assert registry.list_models() == []


def test_a_file_the_card_lists_must_be_there(artifact):
    folder = artifact()
    card_file = folder / "model_card.json"
    card = json.loads(card_file.read_text())
    card["files"]["global_model.safetensors"] = "0" * 64
    card_file.write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match=r"lists global_model\.safetensors, which the artifact"):
        inspect_artifact(folder)


def test_a_card_with_two_hashes_for_its_weights_is_refused(artifact):
    folder = artifact()
    card_file = folder / "model_card.json"
    card = json.loads(card_file.read_text())
    card["files"]["model.safetensors"] = "0" * 64
    card_file.write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match=r"records two sha256s for model\.safetensors"):
        inspect_artifact(folder)


def test_an_intact_artifact_still_registers_and_verifies(registry, register):
    info = register()
    assert registry.verify(V1).digest == info.digest


def test_a_version_registered_with_mismatched_weights_fails_verify(registry: Registry, register):
    """A version registered before the check (or written by hand): its files hash as recorded,
    but its weights are not the card's. ``verify`` (run by ``metarec serve``) refuses it."""
    info = register()
    stored = Path(info.artifact_uri.removeprefix("file://")) / "model.safetensors"
    replace_weights(stored)
    files = {**info.files, "model.safetensors": sha256_file(stored)}
    with registry.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE registry_versions SET files = :files"), {"files": json.dumps(files)}
        )
    with pytest.raises(ArtifactError, match=r"metarec:v1/model\.safetensors: sha256 .* card") as e:
        registry.verify(V1)
    assert "do not serve this version" in str(e.value)

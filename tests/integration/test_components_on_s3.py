"""The pipeline components with URIs on S3, as the compiled KFP pipeline runs them on a cluster.

The KFP steps hand each other ``s3://<bucket>/pipelines/<run>/training_set.parquet`` and
``…/artifact``; here the components' own functions are called the same way (no KFP), against a
real S3-compatible HTTP server (moto's server mode, ``tests/s3_server.py``) reached through
``s3fs`` from the environment a pod gets. Nothing in ``s3fs`` or ``boto`` is patched. The working
directory is the test's own, so a URI mangled into the local path ``s3:/…`` would show there.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from metarec.components.build_training_set import build_training_set
from metarec.components.canary_rollout import _replay_rows
from metarec.components.evaluate_model import evaluate_model
from metarec.components.gate_model import gate_model
from metarec.components.register_model import register_model
from metarec.components.train_model import train_model
from metarec.components.validate_features import validate_features
from metarec.config import load_settings
from metarec.errors import ArtifactError, GatePolicyError, GateRejectedError
from metarec.features.training_set import manifest_path, read_manifest
from metarec.registry import Action, Registry, Stage, VersionRef
from metarec.registry.artifacts import CARD_FILE, inspect_artifact
from metarec.rollout.traffic import replay_rows
from metarec.testing.serving import PERMISSIVE_POLICY, SMALL_CONFIG
from metarec.validation.gate import build_reference_profile
from metarec.validation.record import read_validation_record, record_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = {**SMALL_CONFIG, "max_steps": 4, "support_sizes": ["5", "all"]}
STRICT_POLICY = """
name: strict
require_same_users: false
absolute:
  - {metric: mae, max: 0.0001, cells: mean}
"""


@pytest.fixture
def home(synthetic_home, s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the synthetic home with a reference profile; the registry's artifact
    root on S3 (as the chart sets it); the working directory the test's own."""
    target = tmp_path / "home"
    shutil.copytree(synthetic_home.paths.home, target)
    monkeypatch.setenv("METAREC_REGISTRY__ARTIFACT_ROOT", s3.url("registry-root"))
    monkeypatch.setenv("METAREC_REGISTRY__EXPORT_BENTOML", "false")
    settings = load_settings(home=target)
    build_reference_profile(
        settings, training_set=settings.paths.training_sets / "synthetic.parquet"
    )
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    torch.set_num_threads(1)
    return target


def _s3_digest(s3, url: str, dest: Path) -> str:
    """The digest of the artifact at ``url``, fetched by an independent client."""
    fs = s3.filesystem()
    base = url.removeprefix("s3://")
    for remote in fs.find(base):
        local = dest / remote[len(base) + 1 :]
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(local))
    return inspect_artifact(dest).digest


def test_the_pipeline_chain_runs_on_s3_uris_and_registers_the_artifact_from_s3(
    home: Path, s3, tmp_path: Path
):
    fs = s3.filesystem()
    run = s3.url("pipelines", "run-1")
    policy = tmp_path / "policy.yaml"
    policy.write_text(PERMISSIVE_POLICY)

    # build: the training set and its manifest go to the object store
    built = build_training_set(home=str(home), out=f"{run}/training_set.parquet")
    training_set = built.path
    assert training_set == f"{run}/training_set.parquet"
    assert fs.exists(training_set) and fs.exists(manifest_path(training_set))
    assert read_manifest(training_set).fingerprint == built.fingerprint

    # validate: read from S3, the record written beside it there
    validated = validate_features(training_set=training_set, home=str(home))
    assert validated.success and validated.training_set == training_set
    assert validated.dataset_fingerprint == built.fingerprint
    assert fs.exists(record_path(training_set))
    assert read_validation_record(training_set).result_id == validated.result_id

    # train: an interrupted upload's leftover is no artifact (no card), and is overwritten
    artifact = f"{run}/artifact"
    fs.pipe_file(f"{artifact}/model.safetensors", b"partial")
    trained = train_model(training_set=training_set, home=str(home), config=TINY, out=artifact)
    assert trained.artifact == artifact and not trained.reused
    assert trained.validation_result_id == validated.result_id
    assert trained.dataset_fingerprint == built.fingerprint
    stored = {name.rsplit("/", 1)[-1] for name in fs.find(artifact.removeprefix("s3://"))}
    assert CARD_FILE in stored and fs.cat_file(f"{artifact}/model.safetensors") != b"partial"
    assert not list((home / "artifacts" / "uploads").glob("*")), "the staging copy is removed"
    again = train_model(training_set=training_set, home=str(home), config=TINY, out=artifact)
    assert again.reused and again.artifact == artifact

    # evaluate: the metrics and the plot beside the artifact on S3
    evaluated = evaluate_model(artifact=artifact, training_set=training_set, home=str(home))
    assert evaluated.metrics_json == f"{artifact}.evaluation.json"
    assert evaluated.plot_png == f"{artifact}.evaluation.png"
    metrics = json.loads(fs.cat_file(evaluated.metrics_json))
    assert set(metrics["new_user"]) == {"5", "all"}
    assert trained.algorithm in evaluated.methods
    assert fs.cat_file(evaluated.plot_png)[:8] == b"\x89PNG\r\n\x1a\n"

    # gate: a rejection names the URI in the ledger; the decision is written beside it on S3
    strict = tmp_path / "strict.yaml"
    strict.write_text(STRICT_POLICY)
    with pytest.raises(GateRejectedError, match=re.escape(f"{artifact}.gate.json")):
        gate_model(artifact=artifact, home=str(home), policy=str(strict), training_set=training_set)
    assert json.loads(fs.cat_file(f"{artifact}.gate.json"))["accepted"] is False
    settings = load_settings(home=home)
    with Registry.open(settings) as registry:
        rejected = registry.history("metarec")[-1]
    assert rejected.action is Action.REJECT and rejected.evidence["source"] == artifact

    gated = gate_model(
        artifact=artifact, home=str(home), policy=str(policy), training_set=training_set
    )
    assert gated.accepted and gated.decision_path == f"{artifact}.gate.json"
    decision = json.loads(fs.cat_file(gated.decision_path))
    assert decision["accepted"] is True
    digest = _s3_digest(s3, artifact, tmp_path / "independent")
    assert gated.artifact_digest == decision["artifact_digest"] == digest

    # register: the artifact fetched from S3 becomes a staging version, stored on S3
    registered = register_model(artifact=artifact, decision=gated.decision_path, home=str(home))
    assert (registered.stage, registered.reused) == ("staging", False)
    assert registered.digest == digest
    assert registered.artifact_uri.startswith(s3.url("registry-root") + "/")
    with Registry.open(settings) as registry:
        ref = VersionRef(model=registered.model, version=registered.version)
        assert registry.get_version(ref).stage is Stage.STAGING
        assert registry.verify(ref).digest == digest
        assert registry.read_card(ref).validation_result_id == validated.result_id
    twice = register_model(artifact=artifact, decision=gated.decision_path, home=str(home))
    assert twice.reused and twice.version == registered.version

    # canary: the local traffic replays the training set from its URI
    rows = _replay_rows(settings, training_set)
    assert rows and rows == replay_rows(home / "training_sets" / "synthetic.parquet")
    assert not (Path.cwd() / "s3:").exists(), "no URI was turned into a local path"


def test_register_refuses_a_missing_decision_or_artifact_on_s3(home: Path, s3):
    with pytest.raises(GatePolicyError, match="is missing"):
        register_model(
            artifact=s3.url("absent", "artifact"),
            decision=s3.url("absent", "artifact.gate.json"),
            home=str(home),
        )
    s3.filesystem().pipe_file(s3.url("absent", "artifact.gate.json"), b"{}")
    with pytest.raises(GatePolicyError, match="not a decision"):
        register_model(
            artifact=s3.url("absent", "artifact"),
            decision=s3.url("absent", "artifact.gate.json"),
            home=str(home),
        )
    with pytest.raises(ArtifactError, match="holds no artifact"):
        evaluate_model(
            artifact=s3.url("absent", "artifact"),
            training_set=s3.url("absent", "training_set.parquet"),
            home=str(home),
        )


def test_publishing_refuses_foreign_files_and_fetches_back_what_it_uploaded(s3, tmp_path: Path):
    from metarec.ops import local_artifact, publish_artifact, read_artifact_card
    from metarec.testing.registry import write_fixture_artifact

    folder = write_fixture_artifact(tmp_path / "artifact", seed=2)
    crowded = s3.url("crowded", "artifact")
    s3.filesystem().pipe_file(f"{crowded}/notes.txt", b"someone else's")
    with pytest.raises(ArtifactError, match=r"notes\.txt"):
        publish_artifact(folder, crowded)
    assert s3.filesystem().cat_file(f"{crowded}/notes.txt") == b"someone else's"
    assert read_artifact_card(crowded) is None

    target = s3.url("fresh", "artifact")
    assert publish_artifact(folder, target) == target
    assert read_artifact_card(target) == inspect_artifact(folder).card
    with local_artifact(target) as copy:
        assert inspect_artifact(copy).digest == inspect_artifact(folder).digest
    assert not copy.exists(), "the temporary copy is removed"

"""Registration, promotion, rollback, archive and the ledger, on SQLite."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from metarec.errors import (
    ArtifactError,
    GateRejectedError,
    InvalidTransitionError,
    ModelNotFoundError,
    RegistryConflictError,
    VersionNotFoundError,
)
from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact
from metarec.registry import Action, Registry, Stage, VersionRef


def ref(version: int) -> VersionRef:
    return VersionRef(model="metarec", version=version)


def stages(registry: Registry) -> dict[int, str]:
    return {v.version: v.stage.value for v in registry.list_versions("metarec")}


def test_round_trip_promote_archive_rollback_with_history(registry, register):
    v1 = register()
    assert (v1.version, v1.stage) == (1, Stage.STAGING)
    registry.promote(ref(1), actor="alice", reason="first model", evidence={"ticket": "ML-1"})
    v2 = register(mae=0.77)
    registry.promote(ref(2), actor="bob", reason="better MAE", evidence={"canary": "passed"})
    assert stages(registry) == {1: "archived", 2: "production"}

    restored = registry.rollback("metarec", actor="carol", reason="online quality dropped")
    assert restored.version == 1
    assert stages(registry) == {1: "production", 2: "archived"}
    assert registry.production("metarec").version == 1

    steps = [
        (e.action, e.version, e.from_stage, e.to_stage, e.actor)
        for e in registry.history("metarec")
    ]
    assert steps == [
        (Action.REGISTER, 1, None, Stage.STAGING, "test"),
        (Action.PROMOTE, 1, Stage.STAGING, Stage.PRODUCTION, "alice"),
        (Action.REGISTER, 2, None, Stage.STAGING, "test"),
        (Action.ARCHIVE, 1, Stage.PRODUCTION, Stage.ARCHIVED, "bob"),
        (Action.PROMOTE, 2, Stage.STAGING, Stage.PRODUCTION, "bob"),
        (Action.ARCHIVE, 2, Stage.PRODUCTION, Stage.ARCHIVED, "carol"),
        (Action.ROLLBACK, 1, Stage.ARCHIVED, Stage.PRODUCTION, "carol"),
    ]
    history = registry.history("metarec")
    assert history[0].evidence["gate"]["accepted"] is True
    assert history[0].evidence["digest"] == v1.digest
    assert history[1].evidence == {"previous_production": None, "ticket": "ML-1"}
    assert history[4].evidence["canary"] == "passed"
    assert history[4].evidence["previous_production"] == "metarec:v1"
    assert history[6].evidence["rolled_back_from"] == "metarec:v2"
    assert history[6].reason == "online quality dropped"
    # Promotion entries of one operation share its id.
    assert history[3].operation_id == history[4].operation_id
    assert v2.gate_decision["production_version"] == 1


def test_lineage_comes_from_the_model_card(registry, register):
    info = register(seed=5)
    lineage = info.lineage
    assert lineage.algorithm == "maml"
    assert lineage.feature_service == "meta_training"
    assert lineage.dataset_fingerprint == f"sha256:{5:064x}"
    assert lineage.validation_result_id == "validation-5"
    assert lineage.code_version == "metarec=0.1.0+test"
    assert lineage.training_config["hyperparameters"]["seed"] == 5
    assert lineage.metrics["new_user"]["5"]["maml"]["mae"] == pytest.approx(0.78)
    assert info.gate_decision["accepted"] is True
    assert set(info.files) == {"model.safetensors", "model_card.json"}


def test_training_card_code_version_dict_is_flattened(registry, artifact):
    import json

    folder = artifact()
    card = json.loads((folder / "model_card.json").read_text())
    card["code_version"] = {"metarec": "0.1.0", "git_commit": "abc123"}
    (folder / "model_card.json").write_text(json.dumps(card))
    decision = gate_artifact(folder, policy=load_policy(), model="metarec", registry=registry)
    info = registry.register(folder, model="metarec", gate_decision=decision, actor="t")
    assert info.lineage.code_version == "metarec=0.1.0 git_commit=abc123"


def test_rejected_candidate_is_never_registered(registry, register, artifact):
    register()
    registry.promote(ref(1), actor="a", reason="r")
    bad = artifact(mae=0.99)
    decision = gate_artifact(bad, policy=load_policy(), model="metarec", registry=registry)
    assert not decision.accepted
    with pytest.raises(GateRejectedError, match="margin: mae better than global_mean"):
        registry.register(bad, model="metarec", gate_decision=decision, actor="t")
    registry.record_rejection(model="metarec", gate_decision=decision, actor="t", artifact=str(bad))
    assert stages(registry) == {1: "production"}
    last = registry.history("metarec")[-1]
    assert (last.action, last.version) == (Action.REJECT, None)
    assert last.evidence["gate"]["accepted"] is False


def test_decision_must_be_for_the_same_artifact(registry, artifact):
    first, second = artifact(), artifact()
    decision = gate_artifact(first, policy=load_policy(), model="metarec", registry=registry)
    with pytest.raises(ArtifactError, match="gate decision is for artifact"):
        registry.register(second, model="metarec", gate_decision=decision, actor="t")


def test_same_artifact_registers_once(registry, artifact):
    folder = artifact()
    decision = gate_artifact(folder, policy=load_policy(), model="metarec", registry=registry)
    registry.register(folder, model="metarec", gate_decision=decision, actor="t")
    with pytest.raises(RegistryConflictError, match="already registered as metarec:v1"):
        registry.register(folder, model="metarec", gate_decision=decision, actor="t")
    assert registry.find_by_digest("metarec", decision.artifact_digest).version == 1


def test_invalid_transitions_name_the_problem(registry, register):
    register()
    with pytest.raises(InvalidTransitionError, match="needs a reason"):
        registry.promote(ref(1), actor="a", reason=" ")
    registry.promote(ref(1), actor="a", reason="go")
    with pytest.raises(InvalidTransitionError, match="already the production version"):
        registry.promote(ref(1), actor="a", reason="again")
    with pytest.raises(VersionNotFoundError, match="no previous production version"):
        registry.rollback("metarec", actor="a", reason="nothing to go back to")
    with pytest.raises(VersionNotFoundError, match="has no version v9"):
        registry.promote(ref(9), actor="a", reason="x")
    with pytest.raises(ModelNotFoundError, match="No registered model named 'other'"):
        registry.list_versions("other")
    registry.archive(ref(1), actor="a", reason="retire")
    assert registry.production("metarec") is None
    with pytest.raises(InvalidTransitionError, match="already archived"):
        registry.archive(ref(1), actor="a", reason="retire")


def test_stale_expected_production_is_a_conflict(registry, register):
    register()
    register()
    registry.promote(ref(1), actor="a", reason="go", expected_production=None)
    with pytest.raises(RegistryConflictError, match="expected none in production, found v1"):
        registry.promote(ref(2), actor="b", reason="go", expected_production=None)
    assert stages(registry) == {1: "production", 2: "staging"}
    registry.promote(ref(2), actor="b", reason="go", expected_production=1)
    assert stages(registry) == {1: "archived", 2: "production"}


def test_database_refuses_two_production_versions(registry, register):
    register()
    register()
    with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as connection:
        connection.execute(sa.text("UPDATE registry_versions SET stage = 'production'"))
    assert set(stages(registry).values()) == {"staging"}


def test_database_refuses_unknown_stage(registry, register):
    register()
    with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as connection:
        connection.execute(sa.text("UPDATE registry_versions SET stage = 'canary'"))


@pytest.mark.parametrize(
    "statement",
    ["UPDATE registry_ledger SET reason = 'rewritten'", "DELETE FROM registry_ledger"],
)
def test_ledger_is_append_only_in_the_database(registry, register, statement):
    register()
    before = registry.history("metarec")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), registry.engine.begin() as c:
        c.execute(sa.text(statement))
    assert registry.history("metarec") == before


def test_version_refs_parse():
    assert VersionRef.parse("3", default_model="m").tag == "m:v3"
    assert VersionRef.parse("v3", default_model="m").tag == "m:v3"
    assert VersionRef.parse("other:v12", default_model="m").tag == "other:v12"
    with pytest.raises(VersionNotFoundError, match="not a model version"):
        VersionRef.parse("latest", default_model="m")


def test_reopening_is_a_no_op_and_keeps_data(tmp_path: Path, register, registry):
    register()
    url = str(registry.engine.url)
    with Registry.connect(url=url, artifact_root=str(tmp_path / "artifacts")) as again:
        assert [v.version for v in again.list_versions("metarec")] == [1]


def test_reads_do_not_wait_for_an_open_write_transaction(registry, register):
    register()
    with registry.engine.begin() as writer:  # holds SQLite's write lock until the block ends
        writer.execute(sa.text("UPDATE registry_models SET name = name"))
        assert [v.version for v in registry.list_versions("metarec")] == [1]
        assert len(registry.history("metarec")) == 1

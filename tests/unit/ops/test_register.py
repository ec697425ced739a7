"""`register_candidate`: the one "gate, then register or record the rejection" use case."""

from pathlib import Path

import pytest
from metarec.config import load_settings
from metarec.gate.paired import PairedValues
from metarec.ops import gate_candidate, register_candidate, register_gated
from metarec.registry import Action, Registry, Stage, VersionRef
from metarec.testing.registry import fixture_ranking, register_fixture, write_fixture_artifact


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(home=tmp_path / "home", registry={"export_bentoml": False})


def test_accepted_candidate_is_registered_in_staging(settings, tmp_path):
    artifact = write_fixture_artifact(tmp_path / "good", seed=1)
    seen = []
    outcome = register_candidate(
        settings,
        artifact=artifact,
        model="metarec",
        policy=None,
        training_set=None,
        actor="alice",
        reason="first",
        on_decision=seen.append,
    )
    assert outcome.accepted and outcome.rejection is None
    assert seen == [outcome.decision]
    info = outcome.registered
    assert info is not None and (info.tag, info.stage) == ("metarec:v1", Stage.STAGING)
    with Registry.open(settings) as registry:
        assert registry.get_version(VersionRef(model="metarec", version=1)).stage == Stage.STAGING
        last = registry.history("metarec")[-1]
    assert (last.action, last.actor, last.reason) == (Action.REGISTER, "alice", "first")


def test_rejected_candidate_is_recorded_and_not_registered(settings, tmp_path):
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "first", seed=1)
        registry.promote(VersionRef(model="metarec", version=1), actor="a", reason="r")
        bad = write_fixture_artifact(tmp_path / "bad", seed=2, mae=0.99)
        outcome = register_candidate(
            settings,
            artifact=bad,
            model="metarec",
            policy=None,
            training_set=None,
            actor="bob",
            registry=registry,
        )
        assert not outcome.accepted and outcome.registered is None
        assert outcome.rejection is not None
        assert (outcome.rejection.model, outcome.rejection.artifact) == ("metarec", str(bad))
        assert outcome.rejection.artifact_digest == outcome.decision.artifact_digest
        assert [v.version for v in registry.list_versions("metarec")] == [1]
        last = registry.history("metarec")[-1]
        assert (last.action, last.version, last.actor) == (Action.REJECT, None, "bob")
        assert last.evidence["gate"]["accepted"] is False
        assert last.evidence["source"] == str(bad)


def test_gate_only_records_a_rejection_but_registers_nothing(settings, tmp_path):
    good = write_fixture_artifact(tmp_path / "good", seed=1)
    outcome = register_candidate(
        settings,
        artifact=good,
        model="metarec",
        policy=None,
        training_set=None,
        actor="pipeline",
        register=False,
    )
    assert outcome.accepted and outcome.registered is None and outcome.rejection is None
    assert gate_candidate(settings, artifact=good, model="metarec").accepted
    with Registry.open(settings) as registry:
        assert registry.list_models() == []


def test_register_gated_registers_once_then_returns_the_existing_version(settings, tmp_path):
    good = write_fixture_artifact(tmp_path / "good", seed=1)
    decision = gate_candidate(settings, artifact=good, model="metarec")
    first = register_gated(
        settings, artifact=good, model="metarec", decision=decision, actor="pipeline"
    )
    again = register_gated(
        settings, artifact=good, model="metarec", decision=decision, actor="pipeline"
    )
    assert (first.reused, again.reused) == (False, True)
    assert first.version.tag == again.version.tag == "metarec:v1"
    assert first.version.stage is Stage.STAGING
    with Registry.open(settings) as registry:
        registrations = [e for e in registry.history("metarec") if e.action is Action.REGISTER]
    assert len(registrations) == 1


def test_event_candidate_gets_no_rating_evaluator_from_its_training_set(
    settings, tmp_path, monkeypatch
):
    """An event training set has no ratings: only the rankings are re-evaluated (production's
    on the candidate's users, and the candidate's own, which verifies its card)."""
    import metarec.ops.register as register_module
    from metarec.features.training_set import TrainingSetManifest
    from metarec.gate.verification import VERIFIED_BASIS

    built, ranked = [], []
    candidate = write_fixture_artifact(tmp_path / "cand", seed=2, label="event")

    def rating_evaluator(training_set, *, like):
        built.append(training_set)
        raise AssertionError("no rating evaluator for an event candidate")

    def ranking_evaluator(training_set, *, like):
        def evaluate_ranking(artifact_dir, users):
            ranked.append(sorted(path.name for path in artifact_dir.iterdir()))
            return fixture_ranking(ranker=0.30 if artifact_dir == candidate else 0.40)

        return evaluate_ranking

    def manifest(training_set):
        return TrainingSetManifest.model_construct(fingerprint=f"sha256:{2:064x}")

    monkeypatch.setattr(register_module, "training_set_evaluator", rating_evaluator)
    monkeypatch.setattr(register_module, "training_set_ranking_evaluator", ranking_evaluator)
    monkeypatch.setattr(register_module, "read_manifest", manifest)
    monkeypatch.setattr(  # no per-user pairing: the training set is not on disk
        "metarec.gate.verification.training_set_paired_evaluator",
        lambda training_set: lambda *args: PairedValues(),
    )
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "first", seed=1, label="event")
        registry.promote(VersionRef(model="metarec", version=1), actor="a", reason="r")
        decision = gate_candidate(
            settings,
            artifact=candidate,
            model="metarec",
            registry=registry,
            training_set=tmp_path / "events.parquet",
        )
    assert built == []
    assert ranked == [["model_card.json", "ranker.safetensors"]] * 2
    assert (decision.candidate_label, decision.production_label) == ("event", "event")
    assert decision.metrics_basis == VERIFIED_BASIS
    assert [c.rule for c in decision.broken] == [
        "regression: ranking ndcg@20 worse than production by ≤ 0.02 (mean, new_user)"
    ]


def test_event_candidate_is_registered_over_a_rating_production(settings, tmp_path):
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "first", seed=1)
        registry.promote(VersionRef(model="metarec", version=1), actor="a", reason="r")
        candidate = write_fixture_artifact(tmp_path / "cand", seed=2, label="event")
        outcome = register_candidate(
            settings,
            artifact=candidate,
            model="metarec",
            policy=None,
            training_set=None,
            actor="alice",
            registry=registry,
        )
        assert outcome.accepted, outcome.decision.summary()
        assert outcome.registered is not None and outcome.registered.version == 2
        stored = registry.get_version(VersionRef(model="metarec", version=2)).gate_decision
    assert stored is not None and stored["candidate_label"] == "event"
    assert stored["production_label"] == "rating"
    skipped = [c for c in stored["checks"] if c["skipped"]]
    assert skipped and all(c["detail"].startswith("skipped: ") for c in skipped)

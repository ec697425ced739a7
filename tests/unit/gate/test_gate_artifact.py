"""The gate on artifacts: production from the registry, evaluated on the candidate's users."""

from pathlib import Path

from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact
from metarec.registry import Registry, VersionRef
from metarec.registry.testing import fixture_metrics, register_fixture, write_fixture_artifact


def open_registry(tmp_path: Path) -> Registry:
    return Registry.connect(
        url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "artifacts")
    )


def test_production_is_re_evaluated_on_the_candidates_users(tmp_path: Path):
    calls = []

    def evaluate(artifact_dir: Path, users):
        calls.append((sorted(p.name for p in artifact_dir.iterdir()), dict(users)))
        return fixture_metrics(mae=0.70)  # production is much better on these users

    with open_registry(tmp_path) as registry:
        register_fixture(registry, tmp_path / "prod", seed=1)
        registry.promote(VersionRef(model="metarec", version=1), actor="a", reason="go")
        users = {"new_user": [7, 8], "new_item": [9], "new_user_new_item": [10]}
        candidate = write_fixture_artifact(tmp_path / "cand", seed=2, test_users=users)
        decision = gate_artifact(
            candidate, policy=load_policy(), model="metarec", registry=registry, evaluate=evaluate
        )
    assert calls == [(["model.safetensors", "model_card.json"], users)]
    assert not decision.accepted
    assert decision.production_version == 1
    assert "re-evaluated on the candidate's held-out users" in decision.comparison_basis
    assert {c.rule for c in decision.broken} == {
        "regression: mae worse than production by ≤ 0.02 (mean)"
    }


def test_stored_metrics_are_used_without_evaluator_and_users_are_compared(tmp_path: Path):
    with open_registry(tmp_path) as registry:
        register_fixture(registry, tmp_path / "prod", seed=1)
        registry.promote(VersionRef(model="metarec", version=1), actor="a", reason="go")
        same = write_fixture_artifact(tmp_path / "same", seed=2)
        decision = gate_artifact(same, policy=load_policy(), model="metarec", registry=registry)
        assert decision.accepted
        assert "stored metrics (same held-out users)" in decision.comparison_basis
        other = write_fixture_artifact(tmp_path / "other", seed=3, test_users={"new_user": [99]})
        decision = gate_artifact(other, policy=load_policy(), model="metarec", registry=registry)
        assert not decision.accepted
        assert [c.kind for c in decision.broken] == ["comparability"]


def test_without_registry_no_regression_is_checked(tmp_path: Path):
    candidate = write_fixture_artifact(tmp_path / "c", seed=1)
    decision = gate_artifact(candidate, policy=load_policy(), model="metarec")
    assert decision.accepted
    assert decision.production_version is None

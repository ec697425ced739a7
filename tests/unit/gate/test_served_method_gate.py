"""The gate judges the rating method ``/predict`` serves (issue: the gate judged MAML while the
service served the factor fold-in, so every synthetic quickstart was rejected on a model that
was never served)."""

import json
from pathlib import Path

import pytest
from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact
from metarec.registry import Registry, VersionRef
from metarec.testing.registry import fixture_metrics, fixture_ranking, write_fixture_artifact
from metarec.training.artifact import read_card
from metarec.training.served_method import served_rating_method

MAE_ABSOLUTE = "absolute: mae ≤ 1.05 (each)"
USERS = {"new_user": [7, 8], "new_item": [9], "new_user_new_item": [10]}


def with_factor(artifact: Path, *, mae: float) -> Path:
    """Give the artifact's card a factor fold-in whose ``factor_map`` has MAE ``mae``."""
    card_file = artifact / "model_card.json"
    card = json.loads(card_file.read_text())
    card["factor_model"] = {"config": {"n_factors": 4}}
    for by_size in card["metrics"].values():
        for cell in by_size.values():
            cell["factor_map"] = {**cell["maml"], "mae": mae, "rmse": mae * 1.25}
    card_file.write_text(json.dumps(card, indent=2))
    return artifact


def factor_candidate(tmp_path: Path, name: str = "cand", **kwargs) -> Path:
    # MAML alone breaks the absolute MAE rule (as on the synthetic quickstart); factor_map,
    # the served method, is well within it.
    artifact = write_fixture_artifact(tmp_path / name, mae=1.095, **kwargs)
    return with_factor(artifact, mae=0.70)


def open_registry(tmp_path: Path) -> Registry:
    return Registry.connect(
        url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "artifacts")
    )


def test_the_shared_function_names_the_served_method(tmp_path: Path):
    plain = write_fixture_artifact(tmp_path / "plain")
    assert served_rating_method(read_card(plain)) == "maml"
    assert served_rating_method(read_card(factor_candidate(tmp_path))) == "factor_map"


def test_a_card_with_a_factor_model_is_judged_on_factor_map(tmp_path: Path):
    decision = gate_artifact(factor_candidate(tmp_path), policy=load_policy(), model="metarec")
    assert decision.candidate_method == "factor_map"
    assert decision.accepted, decision.summary()
    mae = [c for c in decision.checks if c.rule == MAE_ABSOLUTE]
    assert mae and all(c.value == pytest.approx(0.70) for c in mae)


def test_a_policys_explicit_method_wins(tmp_path: Path):
    policy = load_policy().model_copy(update={"method": "maml"})
    decision = gate_artifact(factor_candidate(tmp_path), policy=policy, model="metarec")
    assert decision.candidate_method == "maml"
    assert not decision.accepted
    assert {c.rule for c in decision.broken} >= {MAE_ABSOLUTE}


def promote(registry: Registry, artifact: Path) -> int:
    policy = load_policy().model_copy(update={"regression": []})
    decision = gate_artifact(artifact, policy=policy, model="metarec")
    assert decision.accepted, decision.summary()
    info = registry.register(artifact, model="metarec", gate_decision=decision, actor="t")
    registry.promote(VersionRef(model="metarec", version=info.version), actor="t", reason="go")
    return info.version


def test_production_without_a_factor_model_is_judged_on_its_own_served_method(tmp_path: Path):
    calls = []

    def evaluate(artifact_dir: Path, users):
        calls.append(dict(users))
        return fixture_metrics(mae=0.71)  # an older production: MAML only, no factor_map

    with open_registry(tmp_path) as registry:
        promote(registry, write_fixture_artifact(tmp_path / "old", seed=1, mae=0.71))
        candidate = factor_candidate(tmp_path, seed=2, test_users=USERS)
        decision = gate_artifact(
            candidate,
            policy=load_policy(),
            model="metarec",
            registry=registry,
            evaluate=evaluate,
            evaluate_ranking=lambda folder, users: fixture_ranking(),
        )
    assert calls == [USERS]
    assert decision.candidate_method == "factor_map"
    assert decision.production_method == "maml"
    assert decision.accepted, decision.summary()
    [mae] = [c for c in decision.checks if c.rule.startswith("regression: mae")]
    assert (mae.value, mae.reference) == pytest.approx((0.70, 0.71))  # factor_map vs maml
    assert any(
        "each version is judged on its own served rating method: the candidate on factor_map, "
        "metarec:v1 on maml (metarec:v1 has no factor model: an older version)" in note
        for note in decision.notes
    )


def test_production_with_a_factor_model_is_evaluated_on_factor_map(tmp_path: Path):
    def evaluate(artifact_dir: Path, users):
        metrics = fixture_metrics(mae=1.2)  # production's MAML is poor; its factor_map is not
        for by_size in metrics.values():
            for cell in by_size.values():
                cell["factor_map"] = {**cell["maml"], "mae": 0.69}
        return metrics

    with open_registry(tmp_path) as registry:
        production = with_factor(write_fixture_artifact(tmp_path / "p", seed=1), mae=0.69)
        promote(registry, production)
        candidate = factor_candidate(tmp_path, seed=2, test_users=USERS)
        decision = gate_artifact(
            candidate,
            policy=load_policy(),
            model="metarec",
            registry=registry,
            evaluate=evaluate,
            evaluate_ranking=lambda folder, users: fixture_ranking(),
        )
    assert decision.production_method == "factor_map"
    [mae] = [c for c in decision.checks if c.rule.startswith("regression: mae")]
    assert mae.reference == 0.69 and mae.passed
    assert not any("judged on its own served" in note for note in decision.notes)

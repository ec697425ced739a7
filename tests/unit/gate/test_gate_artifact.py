"""The gate on artifacts: production from the registry, evaluated on the candidate's users."""

from pathlib import Path

import pytest
from metarec.gate.decision import NO_RANKING
from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact, training_set_ranking_evaluator
from metarec.registry import Registry
from metarec.testing.registry import fixture_metrics

NDCG_REGRESSION = "regression: ranking ndcg@20 worse than production by ≤ 0.02 (mean, new_user)"
USERS = {"new_user": [7, 8], "new_item": [9], "new_user_new_item": [10]}


def open_registry(tmp_path: Path) -> Registry:
    return Registry.connect(
        url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "artifacts")
    )


def test_production_is_re_evaluated_on_the_candidates_users(
    tmp_path: Path, production, ranked_artifact, ranking
):
    calls = []

    def evaluate(artifact_dir: Path, users):
        calls.append(("rating", sorted(p.name for p in artifact_dir.iterdir()), dict(users)))
        return fixture_metrics(mae=0.70)  # production is much better on these users

    def evaluate_ranking(artifact_dir: Path, users):
        calls.append(("ranking", sorted(p.name for p in artifact_dir.iterdir()), dict(users)))
        return ranking(ranker=0.31)

    with open_registry(tmp_path) as registry:
        production(registry, ranking=ranking(), seed=1)
        candidate = ranked_artifact("cand", ranking=ranking(), seed=2, test_users=USERS)
        decision = gate_artifact(
            candidate,
            policy=load_policy(),
            model="metarec",
            registry=registry,
            evaluate=evaluate,
            evaluate_ranking=evaluate_ranking,
        )
    files = ["model.safetensors", "model_card.json"]
    assert calls == [("rating", files, USERS), ("ranking", files, USERS)]
    assert not decision.accepted
    assert decision.production_version == 1
    assert "re-evaluated on the candidate's held-out users" in decision.comparison_basis
    assert "ranking re-evaluated" in (decision.ranking_comparison_basis or "")
    assert {c.rule for c in decision.broken} == {
        "regression: mae worse than production by ≤ 0.02 (mean)"
    }
    assert decision.ranking_summary[0].production == pytest.approx(0.31)


def test_ranking_regression_on_re_evaluated_production(
    tmp_path: Path, production, ranked_artifact, ranking
):
    with open_registry(tmp_path) as registry:
        production(registry, ranking=ranking(ranker=0.30), seed=1)
        candidate = ranked_artifact("cand", ranking=ranking(ranker=0.30), seed=2)
        decision = gate_artifact(
            candidate,
            policy=load_policy(),
            model="metarec",
            registry=registry,
            evaluate_ranking=lambda folder, users: ranking(ranker=0.40),
        )
    assert not decision.accepted
    [broken] = decision.broken
    assert broken.rule == NDCG_REGRESSION
    assert (broken.value, broken.reference) == (pytest.approx(0.30), pytest.approx(0.40))
    assert broken.observed == pytest.approx(0.10)


def test_stored_metrics_are_used_without_evaluator_and_users_are_compared(
    tmp_path: Path, production, ranked_artifact, ranking
):
    with open_registry(tmp_path) as registry:
        production(registry, ranking=ranking(ranker=0.31), seed=1)
        same = ranked_artifact("same", ranking=ranking(ranker=0.30), seed=2)
        decision = gate_artifact(same, policy=load_policy(), model="metarec", registry=registry)
        assert decision.accepted, decision.summary()
        assert "stored metrics (same held-out users)" in decision.comparison_basis
        assert "stored ranking metrics (same held-out users)" in (
            decision.ranking_comparison_basis or ""
        )
        [check] = [c for c in decision.checks if c.rule == NDCG_REGRESSION]
        assert check.reference == pytest.approx(0.31)  # read from production's stored card

        worse = ranked_artifact("worse", ranking=ranking(ranker=0.25), seed=4)
        decision = gate_artifact(worse, policy=load_policy(), model="metarec", registry=registry)
        assert [c.rule for c in decision.broken] == [NDCG_REGRESSION]

        other = ranked_artifact("other", ranking=ranking(), seed=3, test_users={"new_user": [99]})
        decision = gate_artifact(other, policy=load_policy(), model="metarec", registry=registry)
        assert not decision.accepted
        assert [(c.kind, c.table) for c in decision.broken] == [
            ("comparability", "rating"),
            ("comparability", "ranking"),
        ]


def test_re_evaluated_ratings_with_stored_ranking_on_other_users(
    tmp_path: Path, production, ranked_artifact, ranking
):
    with open_registry(tmp_path) as registry:
        production(registry, ranking=ranking(), seed=1)
        candidate = ranked_artifact("cand", ranking=ranking(), seed=2, test_users=USERS)
        decision = gate_artifact(
            candidate,
            policy=load_policy(),
            model="metarec",
            registry=registry,
            evaluate=lambda folder, users: fixture_metrics(),
        )
    assert [(c.kind, c.table) for c in decision.broken] == [("comparability", "ranking")]


def test_old_production_without_ranking_needs_re_evaluation(
    tmp_path: Path, production, ranked_artifact, ranking
):
    with open_registry(tmp_path) as registry:
        production(registry, ranking=None, seed=1)  # registered before ranking evaluation
        candidate = ranked_artifact("cand", ranking=ranking(), seed=2)
        stored = gate_artifact(candidate, policy=load_policy(), model="metarec", registry=registry)
        assert not stored.accepted
        [broken] = stored.broken
        assert broken.rule == NDCG_REGRESSION
        assert "production v1 has no ranking metrics" in broken.detail
        assert "--training-set" in broken.detail
        evaluated = gate_artifact(
            candidate,
            policy=load_policy(),
            model="metarec",
            registry=registry,
            evaluate_ranking=lambda folder, users: ranking(ranker=0.29),
        )
        assert evaluated.accepted, evaluated.summary()


def test_candidate_without_ranking_fails_with_the_fix_and_production_is_not_evaluated(
    tmp_path: Path, production, ranked_artifact, ranking
):
    def evaluate_ranking(folder, users):
        raise AssertionError("production's ranking is not needed")

    with open_registry(tmp_path) as registry:
        production(registry, ranking=ranking(), seed=1)
        old = ranked_artifact("old", ranking=None, seed=2)
        decision = gate_artifact(
            old,
            policy=load_policy(),
            model="metarec",
            registry=registry,
            evaluate_ranking=evaluate_ranking,
        )
    assert not decision.accepted
    assert {c.table for c in decision.broken} == {"ranking"}
    assert all(c.detail == NO_RANKING for c in decision.broken)
    assert len(decision.broken) == 2  # the margin over popularity and the regression


def test_without_registry_no_regression_is_checked(tmp_path: Path, ranked_artifact, ranking):
    candidate = ranked_artifact("c", ranking=ranking(), seed=1)
    decision = gate_artifact(candidate, policy=load_policy(), model="metarec")
    assert decision.accepted, decision.summary()
    assert decision.production_version is None
    old = ranked_artifact("old", ranking=None, seed=2)
    decision = gate_artifact(old, policy=load_policy(), model="metarec")
    assert not decision.accepted
    assert [c.detail for c in decision.broken] == [NO_RANKING]


def test_training_set_ranking_evaluator_asks_for_the_candidates_cells(
    tmp_path: Path, monkeypatch, ranking
):
    import metarec.training.evaluation as evaluation

    calls = []

    def fake(artifact_dir, training_set_path, *, users, scenarios, cells, device="cpu"):
        calls.append((artifact_dir, training_set_path, users, scenarios, cells, device))
        return {"new_user": {}}

    # The trainer-side function may not exist yet: the evaluator imports it only when it runs.
    monkeypatch.setattr(evaluation, "evaluate_ranking_artifact", fake, raising=False)
    like = {"new_user": ranking()["new_user"], "new_item": {"random@10": {}}}
    evaluate = training_set_ranking_evaluator(tmp_path / "ts.parquet", like=like)
    assert evaluate(tmp_path / "prod", {"new_user": (1, 2)}) == {"new_user": {}}
    [(folder, training_set, users, scenarios, cells, device)] = calls
    assert (folder, training_set, device) == (tmp_path / "prod", tmp_path / "ts.parquet", "cpu")
    assert users == {"new_user": [1, 2]}
    assert scenarios == ["new_item", "new_user"]
    assert sorted(cells) == sorted(f"{o}@{k}" for o in ("time", "random") for k in (5, 10, 20))


def test_the_ranking_evaluator_keeps_the_cards_cell_without_support(tmp_path: Path, monkeypatch):
    # The trainer names the K = 0 cell after the first order it is given: the card's `time@0`.
    # Sorted cells (random first) re-evaluated a `random@0` cell the card has not, so every
    # mean ranking regression found production's value missing.
    import metarec.training.evaluation as evaluation
    from metarec.training.ranking import Cells, cell_name

    asked = []
    monkeypatch.setattr(
        evaluation,
        "evaluate_ranking_artifact",
        lambda *args, cells, **kwargs: asked.append(cells) or {},
    )
    card_cells = ["time@0", "time@5", "time@10", "random@5", "random@10"]
    like = {"new_user": {cell: {} for cell in card_cells}}
    training_set_ranking_evaluator(tmp_path / "ts.parquet", like=like)(tmp_path, {})
    [cells] = asked
    assert [cell_name(order, k) for order, k in Cells.parse(cells)] == card_cells

"""Regression rules test the difference paired over users, not the bare mean difference.

Two models that differ only by their training seed differ on the same users by chance, at times
by as much as a margin, so the bare mean-difference rule could reject honest retrains. With
per-user values of both versions, a regression rule is broken only when the candidate is worse
by more than its margin *significantly* (one-sided paired bootstrap).
"""

from datetime import UTC, datetime

import numpy as np
import pytest
from metarec.gate.decision import decide
from metarec.gate.paired import PairedValues, paired_test
from metarec.gate.policy import GatePolicy, RegressionRule, load_policy
from metarec.gate.rules import NOT_PAIRED
from metarec.testing.registry import RANKING_CELLS, fixture_metrics, fixture_ranking

DECIDED_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NDCG_REGRESSION = "regression: ranking ndcg@20 worse than production by ≤ 0.02 (mean, new_user)"
MAE_REGRESSION = "regression: mae worse than production by ≤ 0.02 (mean)"
USERS = 120


def per_user_ranking(candidate: np.ndarray, production: np.ndarray) -> dict:
    """The same per-user nDCG@20 in every new-user ranking cell."""
    pairs = zip(candidate, production, strict=True)
    values = {u: (float(c), float(p), 1.0) for u, (c, p) in enumerate(pairs)}
    return {"new_user": {cell: {"ndcg@20": values} for cell in RANKING_CELLS}}


def ranking_decision(candidate: np.ndarray, production: np.ndarray, *, paired: bool = True):
    return decide(
        load_policy(),
        model="metarec",
        artifact_digest="d" * 64,
        decided_at=DECIDED_AT,
        candidate_metrics=fixture_metrics(),
        candidate_method="maml",
        candidate_ranking=fixture_ranking(ranker=float(candidate.mean())),
        production_metrics=fixture_metrics(),
        production_method="maml",
        production_version=3,
        comparison_basis="re-evaluated",
        production_ranking=fixture_ranking(ranker=float(production.mean())),
        paired=PairedValues(ranking=per_user_ranking(candidate, production)) if paired else None,
    )


def seed_noise() -> tuple[np.ndarray, np.ndarray]:
    """Two retrains of one model: each user's difficulty plus each model's own noise."""
    rng = np.random.default_rng(16)
    difficulty = rng.uniform(0.1, 0.7, USERS)
    production = difficulty + rng.normal(0.0, 0.1, USERS)
    candidate = difficulty + rng.normal(0.0, 0.1, USERS)
    return candidate, production


def check(decision, rule: str):
    [found] = [c for c in decision.checks if c.rule == rule]
    return found


def test_a_retrain_that_differs_by_seed_noise_passes():
    candidate, production = seed_noise()
    regression = production.mean() - candidate.mean()
    assert regression > 0.02  # the bare mean-difference rule rejected exactly this
    assert not check(ranking_decision(candidate, production, paired=False), NDCG_REGRESSION).passed

    decision = ranking_decision(candidate, production)
    assert decision.accepted, decision.summary()
    found = check(decision, NDCG_REGRESSION)
    assert found.observed == pytest.approx(regression)
    assert f"mean regression {regression:+.4f}" in found.detail
    assert "one-sided 95% CI [" in found.detail and "margin 0.02" in found.detail
    assert "p=" in found.detail and "not significantly worse" in found.detail


def test_a_candidate_uniformly_worse_by_twice_the_margin_is_rejected():
    rng = np.random.default_rng(3)
    production = rng.uniform(0.1, 0.7, USERS)
    candidate = production - 0.04 + rng.normal(0.0, 0.01, USERS)
    decision = ranking_decision(candidate, production)
    assert not decision.accepted
    [broken] = decision.broken
    assert broken.rule == NDCG_REGRESSION
    assert broken.observed == pytest.approx(0.04, abs=0.003)
    test = paired_test(
        [per_user_ranking(candidate, production)["new_user"]["random@10"]["ndcg@20"]],
        lower_is_better=False,
        margin=0.02,
        alpha=0.05,
        resamples=2000,
        seed=0,
    )
    assert test.lower > 0.02  # significantly worse than the margin
    assert "one-sided 95% CI [+0.03" in broken.detail
    assert "margin 0.02" in broken.detail and "significantly" in broken.detail


def test_mae_regression_is_paired_with_the_cards_pooled_mean():
    # MAE is pooled over query ratings: each user's MAE is weighted by its ratings, so the
    # paired mean difference is the card's.
    rng = np.random.default_rng(5)
    production = rng.uniform(0.6, 1.0, USERS)
    weights = rng.integers(1, 30, USERS).astype(float)
    candidate = production + 0.05  # uniformly worse by 2.5 margins
    values = {u: (float(candidate[u]), float(production[u]), weights[u]) for u in range(USERS)}
    cells = {"5": {"mae": values}, "10": {"mae": values}}
    paired = {scenario: cells for scenario in ("new_user", "new_item", "new_user_new_item")}
    policy = GatePolicy(
        regression=[RegressionRule(metric="mae", max_regression=0.02, cells="mean")]
    )
    decision = decide(
        policy,
        model="metarec",
        artifact_digest="d" * 64,
        decided_at=DECIDED_AT,
        candidate_metrics=fixture_metrics(mae=0.83),
        candidate_method="maml",
        production_metrics=fixture_metrics(mae=0.78),
        production_method="maml",
        production_version=3,
        paired=PairedValues(rating=paired),
    )
    [broken] = decision.broken
    assert broken.rule == MAE_REGRESSION
    assert broken.observed == pytest.approx(0.05)
    assert "paired over 120 users" in broken.detail


def test_without_per_user_values_the_mean_difference_is_judged_and_said():
    candidate, production = seed_noise()
    found = check(ranking_decision(candidate, production, paired=False), NDCG_REGRESSION)
    assert NOT_PAIRED in found.detail


def test_the_paired_test_is_seeded_and_its_level_is_a_policy_field():
    candidate, production = seed_noise()
    cells = [c["ndcg@20"] for c in per_user_ranking(candidate, production)["new_user"].values()]

    def run(alpha: float, seed: int):
        return paired_test(
            cells, lower_is_better=False, margin=0.02, alpha=alpha, resamples=500, seed=seed
        )

    assert run(0.05, 1) == run(0.05, 1)
    assert run(0.25, 1).lower > run(0.05, 1).lower
    rule = load_policy().regression[-1]
    assert (rule.alpha, rule.resamples, rule.seed) == (0.05, 2000, 0)
    with pytest.raises(ValueError, match="alpha"):
        RegressionRule(metric="mae", max_regression=0.02, alpha=0.7)


def test_gate_artifact_pairs_both_versions_on_the_candidates_users(
    tmp_path, production, ranked_artifact
):
    from metarec.gate.run import gate_artifact
    from metarec.registry import Registry

    candidate_values, production_values = seed_noise()
    users = {"new_user": [7, 8], "new_item": [9], "new_user_new_item": [10]}
    calls = []

    def evaluate_paired(candidate_dir, production_dir, chosen, request):
        calls.append((candidate_dir, production_dir.name, dict(chosen), request))
        return PairedValues(ranking=per_user_ranking(candidate_values, production_values))

    with Registry.connect(
        url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "artifacts")
    ) as registry:
        production(registry, ranking=fixture_ranking(ranker=float(production_values.mean())))
        candidate = ranked_artifact(
            "cand",
            ranking=fixture_ranking(ranker=float(candidate_values.mean())),
            seed=2,
            test_users=users,
        )
        decision = gate_artifact(
            candidate,
            policy=load_policy(),
            model="metarec",
            registry=registry,
            evaluate=lambda folder, chosen: fixture_metrics(),
            evaluate_ranking=lambda folder, chosen: fixture_ranking(
                ranker=float(production_values.mean())
            ),
            evaluate_paired=evaluate_paired,
        )
    [(folder, fetched, chosen, request)] = calls
    assert (folder, fetched, chosen) == (candidate, "artifact", users)
    assert request.candidate_method == request.production_method == "maml"
    assert request.rating_metrics == ("mae", "ndcg@5")
    assert set(request.ranking_cells) == set(RANKING_CELLS)
    assert decision.accepted, decision.summary()
    assert "paired over 120 users" in check(decision, NDCG_REGRESSION).detail

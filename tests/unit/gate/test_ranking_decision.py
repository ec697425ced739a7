"""The pure decision on the card's ranking table: the served ranker vs the baselines and
production, a card without a ranking table, and the ranking summary."""

import json
from datetime import UTC, datetime

import pytest
from metarec.gate.decision import NO_RANKING, decide
from metarec.gate.policy import AbsoluteRule, GatePolicy, MarginRule, RegressionRule, load_policy
from metarec.testing.registry import fixture_metrics

NDCG_MARGIN = "margin: ranking ndcg@20 better than popularity by ≥ 0 (mean, new_user)"
NDCG_REGRESSION = "regression: ranking ndcg@20 worse than production by ≤ 0.02 (mean, new_user)"

# decide is pure: the caller passes the decision time.
DECIDED_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def run(policy, ranking, **kwargs):
    return decide(
        policy,
        model="metarec",
        artifact_digest="d" * 64,
        decided_at=DECIDED_AT,
        candidate_metrics=fixture_metrics(),
        candidate_method="maml",
        candidate_ranking=ranking,
        **kwargs,
    )


def production(ranking_table, **kwargs):
    return {
        "production_metrics": fixture_metrics(),
        "production_method": "maml",
        "production_version": 3,
        "comparison_basis": "re-evaluated",
        "production_ranking": ranking_table,
        **kwargs,
    }


def test_ranker_below_popularity_is_refused_with_both_numbers(ranking):
    decision = run(load_policy(), ranking(ranker=0.18))
    assert not decision.accepted
    [broken] = decision.broken
    assert broken.rule == NDCG_MARGIN
    assert (broken.kind, broken.table, broken.metric) == ("margin", "ranking", "ndcg@20")
    assert (broken.scenario, broken.support_size) == ("mean", "6 cells")
    assert broken.value == pytest.approx(0.18)
    assert broken.reference == pytest.approx(0.20)
    assert broken.reference_name == "popularity"
    assert broken.observed == pytest.approx(-0.02)
    assert "improvement -0.0200 vs popularity (broken" in broken.detail
    assert NDCG_MARGIN in decision.summary()


def test_ranker_above_popularity_passes(ranking):
    decision = run(load_policy(), ranking(ranker=0.30))
    assert decision.accepted, decision.summary()
    [check] = [c for c in decision.checks if c.table == "ranking"]
    assert check.observed == pytest.approx(0.10)
    assert decision.ranking_method == "ranker"
    assert decision.ranking_comparison_basis is None  # no production


def test_ranking_summary_shows_the_candidate_beside_every_baseline(ranking):
    decision = run(load_policy(), ranking(ranker=0.30))
    rows = decision.ranking_summary
    assert len(rows) == 3 * 6
    first = rows[0]
    assert (first.scenario, first.cell, first.metric) == ("new_item", "random@5", "ndcg@20")
    assert [row.cell for row in rows[:6]] == [
        "random@5",
        "random@10",
        "random@20",
        "time@5",
        "time@10",
        "time@20",
    ]
    assert first.candidate == pytest.approx(0.30)
    assert first.baselines["popularity"] == pytest.approx(0.20)
    assert set(first.baselines) == {
        "meta_ranker",
        "plain_ranker",
        "rating_model",
        "popularity",
        "item_mean",
        "item_knn",
        "ease",
        "ease_weighted",
    }
    assert first.production is None
    stored = json.loads(decision.model_dump_json())
    assert stored["ranking_summary"][0]["baselines"]["ease"] == pytest.approx(0.24)


@pytest.mark.parametrize("table", [None, {}, {"new_user": {}}])
def test_card_without_ranking_fails_every_ranking_rule_with_the_fix(table):
    decision = run(load_policy(), table, **production(None))
    assert not decision.accepted
    broken = {c.rule: c for c in decision.broken}
    assert set(broken) == {NDCG_MARGIN, NDCG_REGRESSION}
    for check in broken.values():
        assert check.table == "ranking"
        assert check.detail == NO_RANKING
        assert "retrain with this MetaRec" in check.detail
    assert decision.ranking_summary == []


def test_rating_rules_are_unchanged_by_a_missing_ranking_table():
    policy = load_policy()
    rating_only = policy.model_copy(
        update={"margins": policy.margins[:3], "regression": policy.regression[:2]}
    )
    assert run(rating_only, None).accepted


def test_ranking_regression_against_production_on_the_same_users(ranking):
    ok = run(load_policy(), ranking(ranker=0.30), **production(ranking(ranker=0.31)))
    assert ok.accepted, ok.summary()
    [check] = [c for c in ok.checks if c.kind == "regression" and c.table == "ranking"]
    assert (check.value, check.reference) == (pytest.approx(0.30), pytest.approx(0.31))
    assert check.reference_name == "production v3"
    assert check.observed == pytest.approx(0.01)
    assert ok.ranking_summary[0].production == pytest.approx(0.31)
    assert ok.ranking_comparison_basis == "re-evaluated"

    worse = run(load_policy(), ranking(ranker=0.30), **production(ranking(ranker=0.35)))
    assert not worse.accepted
    [broken] = worse.broken
    assert broken.rule == NDCG_REGRESSION
    assert broken.observed == pytest.approx(0.05)
    assert "regression +0.0500 vs production v3 (broken, limit 0.02)" in broken.detail


def test_ranking_regression_reads_productions_ranker_not_its_rating_method(ranking):
    policy = GatePolicy(
        regression=[RegressionRule(table="ranking", metric="ndcg@20", max_regression=0.0)]
    )
    prod = ranking(ranker=0.25, meta_ranker=0.90)  # only production's "ranker" counts
    decision = run(policy, ranking(ranker=0.30), **production(prod, production_method="reptile"))
    assert decision.accepted


def test_production_without_ranking_metrics_fails_with_the_fix(ranking):
    decision = run(load_policy(), ranking(), **production({}, comparison_basis="v3's stored"))
    assert not decision.accepted
    [broken] = decision.broken
    assert broken.rule == NDCG_REGRESSION
    assert broken.reference_name == "production v3"
    assert "production v3 has no ranking metrics" in broken.detail
    assert "metarec gate --training-set" in broken.detail


def test_ranking_numbers_on_other_users_break_comparability(ranking):
    numbers = production(
        ranking(), ranking_same_users=False, ranking_comparison_basis="v3's stored ranking"
    )
    decision = run(load_policy(), ranking(), **numbers)
    assert not decision.accepted
    [broken] = decision.broken
    assert (broken.kind, broken.table) == ("comparability", "ranking")
    assert "v3's stored ranking" in broken.detail
    lenient = load_policy().model_copy(update={"require_same_users": False})
    assert run(lenient, ranking(), **numbers).accepted
    # Without a ranking regression rule, production's ranking users do not matter.
    rating_only = load_policy().model_copy(update={"regression": load_policy().regression[:2]})
    assert run(rating_only, ranking(), **numbers).accepted


def test_ranking_cells_each_and_absolute_bounds(ranking):
    table = ranking(ranker=0.30)
    table["new_user"]["random@10"]["ranker"]["ndcg@20"] = 0.19
    policy = GatePolicy(
        margins=[
            MarginRule(
                table="ranking",
                metric="ndcg@20",
                over="popularity",
                scenarios=["new_user"],
                ranking_cells=["random@10", "time@10"],
            )
        ],
        absolute=[AbsoluteRule(table="ranking", metric="popularity", max=0.7, cells="mean")],
    )
    decision = run(policy, table)
    margin = [c for c in decision.checks if c.kind == "margin"]
    assert [(c.scenario, c.support_size, c.passed) for c in margin] == [
        ("new_user", "random@10", False),
        ("new_user", "time@10", True),
    ]
    [absolute] = [c for c in decision.checks if c.kind == "absolute"]
    assert absolute.passed and absolute.value == pytest.approx(0.6)
    assert absolute.rule == "absolute: ranking popularity ≤ 0.7 (mean)"


def test_ranking_rule_matching_no_cell_names_the_cells(ranking):
    rule = MarginRule(
        table="ranking", metric="ndcg@20", over="popularity", ranking_cells=["time@50"]
    )
    decision = run(GatePolicy(margins=[rule]), ranking())
    [broken] = decision.broken
    assert "no evaluated (scenario, ranking cell) cell matches this rule" in broken.detail


def test_custom_ranking_method_and_missing_baseline(ranking):
    rule = MarginRule(table="ranking", metric="ndcg@20", over="bpr", cells="mean")
    policy = GatePolicy(ranking_method="meta_ranker", margins=[rule])
    decision = run(policy, ranking())
    [broken] = decision.broken
    assert broken.value == pytest.approx(0.27)  # meta_ranker's, not ranker's
    assert "ndcg@20 of bpr missing" in broken.detail
    assert decision.ranking_summary[0].candidate == pytest.approx(0.27)
    assert "ranker" in decision.ranking_summary[0].baselines

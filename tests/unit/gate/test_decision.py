"""The pure gate decision: every rule kind met and broken, with its numbers."""

import json
from datetime import UTC, datetime

import pytest
from metarec.gate.decision import GateDecision, decide
from metarec.gate.policy import (
    AbsoluteRule,
    GatePolicy,
    MarginRule,
    RegressionRule,
    load_policy,
)
from metarec.testing.registry import fixture_metrics

# decide is pure: the caller passes the decision time.
DECIDED_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def run(policy, candidate, **kwargs):
    return decide(
        policy,
        model="metarec",
        artifact_digest="d" * 64,
        decided_at=DECIDED_AT,
        candidate_metrics=candidate,
        candidate_method="maml",
        **kwargs,
    )


def test_good_candidate_passes_default_policy_with_every_number(ranking):
    decision = run(load_policy(), fixture_metrics(), candidate_ranking=ranking())
    assert decision.accepted
    assert decision.broken == []
    assert "no production version: regression rules not applied" in decision.notes
    absolute = [c for c in decision.checks if c.kind == "absolute"]
    assert len(absolute) == 2 * 6  # two rules x (3 scenarios x 2 support sizes)
    margin = next(
        c for c in decision.checks if c.rule.startswith("margin: mae") and "global" in c.rule
    )
    assert margin.value == pytest.approx(0.78)
    assert margin.reference == pytest.approx(0.95)
    assert margin.observed == pytest.approx(0.17)
    assert margin.passed and "met" in margin.detail
    json.loads(decision.model_dump_json())  # JSON-able, stored with the version


def test_bad_candidate_names_the_broken_rules():
    decision = run(load_policy(), fixture_metrics(mae=0.99, ndcg=0.70))
    assert not decision.accepted
    broken = {c.rule for c in decision.broken}
    assert "margin: mae better than global_mean by ≥ 0.02 (mean)" in broken
    assert "margin: ndcg@5 better than item_bias by ≥ -0.01 (mean)" in broken
    assert "rejected, broken:" in decision.summary()
    assert "margin: mae better than item_bias" in decision.summary()


def test_absolute_rule_per_cell():
    metrics = fixture_metrics()
    metrics["new_item"]["10"]["maml"]["mae"] = 1.2
    decision = run(GatePolicy(absolute=[AbsoluteRule(metric="mae", max=1.0)]), metrics)
    assert not decision.accepted
    [broken] = decision.broken
    assert (broken.scenario, broken.support_size, broken.value) == ("new_item", "10", 1.2)
    assert "1.2000 > max 1" in broken.detail


def test_min_bound_for_ranking_metrics():
    policy = GatePolicy(absolute=[AbsoluteRule(metric="ndcg@5", min=0.9, cells="mean")])
    decision = run(policy, fixture_metrics(ndcg=0.86))
    [check] = decision.checks
    assert not check.passed and check.scenario == "mean" and check.support_size == "6 cells"


def test_regression_against_production_on_same_users():
    policy = GatePolicy(regression=[RegressionRule(metric="mae", max_regression=0.02)])
    production = fixture_metrics(mae=0.75)
    ok = run(
        policy,
        fixture_metrics(mae=0.76),
        production_metrics=production,
        production_method="maml",
        production_version=3,
        comparison_basis="re-evaluated",
    )
    assert ok.accepted
    assert all(c.reference_name == "production v3" for c in ok.checks)
    worse = run(
        policy,
        fixture_metrics(mae=0.80),
        production_metrics=production,
        production_method="maml",
        production_version=3,
    )
    assert not worse.accepted
    assert worse.broken[0].observed == pytest.approx(0.05)
    assert "regression +0.0500" in worse.broken[0].detail


def test_regression_uses_productions_own_method():
    policy = GatePolicy(regression=[RegressionRule(metric="mae", max_regression=0.0)])
    production = fixture_metrics(algorithm="reptile", mae=0.70)
    decision = run(
        policy,
        fixture_metrics(mae=0.78),
        production_metrics=production,
        production_method="reptile",
        production_version=1,
    )
    assert not decision.accepted


def test_different_users_break_comparability():
    policy = GatePolicy(regression=[RegressionRule(metric="mae", max_regression=0.1)])
    decision = run(
        policy,
        fixture_metrics(),
        production_metrics=fixture_metrics(),
        production_method="maml",
        production_version=1,
        same_users=False,
    )
    assert not decision.accepted
    assert decision.broken[0].kind == "comparability"
    lenient = policy.model_copy(update={"require_same_users": False})
    assert run(
        lenient,
        fixture_metrics(),
        production_metrics=fixture_metrics(),
        production_method="maml",
        production_version=1,
        same_users=False,
    ).accepted


def test_missing_metrics_fail_closed():
    policy = GatePolicy(margins=[MarginRule(metric="mae", over="meta_sgd_baseline")])
    decision = run(policy, fixture_metrics())
    assert not decision.accepted
    assert "meta_sgd_baseline missing" in decision.broken[0].detail
    empty = run(load_policy(), {})
    assert not empty.accepted
    assert empty.checks[0].kind == "coverage"
    assert not run(GatePolicy(), {}).accepted


def test_relative_margin_and_cell_selection():
    metrics = fixture_metrics(mae=0.78)
    metrics["new_user"]["all"] = metrics["new_user"]["10"]
    rule = MarginRule(
        metric="mae",
        over="global_mean",
        min_improvement=0.15,
        relative=True,
        scenarios=["new_user"],
        support_sizes=["all", 5],
    )
    decision = run(GatePolicy(margins=[rule]), metrics)
    assert [(c.scenario, c.support_size) for c in decision.checks] == [
        ("new_user", "5"),
        ("new_user", "all"),
    ]
    assert decision.checks[0].observed == pytest.approx((0.95 - 0.78) / 0.95)
    assert decision.accepted


def test_rule_matching_no_cell_fails():
    rule = AbsoluteRule(metric="mae", max=1.0, scenarios=["nonexistent"])
    decision = run(GatePolicy(absolute=[rule]), fixture_metrics())
    assert not decision.accepted
    assert "no evaluated" in decision.broken[0].detail


def test_nan_metric_counts_as_missing():
    metrics = fixture_metrics()
    metrics["new_user"]["5"]["maml"]["mae"] = float("nan")
    decision = run(GatePolicy(absolute=[AbsoluteRule(metric="mae", max=1.0)]), metrics)
    assert not decision.accepted
    json.loads(decision.model_dump_json())


def test_old_stored_decision_without_ranking_fields_still_loads():
    stored = json.loads(run(GatePolicy(), fixture_metrics()).model_dump_json())
    for key in ("ranking_method", "ranking_comparison_basis", "ranking_summary"):
        stored.pop(key)
    for check in stored["checks"]:
        check.pop("table")
    old = GateDecision.model_validate(stored)
    assert old.ranking_summary == [] and old.ranking_method is None

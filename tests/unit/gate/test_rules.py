"""The typed rules judge their own numbers; the decision takes its time from the caller."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from metarec.gate.checks import Numbers, rule_checks
from metarec.gate.decision import decide
from metarec.gate.policy import AbsoluteRule, GatePolicy, MarginRule, RegressionRule, load_policy
from metarec.gate.run import gate_artifact
from metarec.testing.registry import fixture_metrics

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def rating(production=None) -> Numbers:
    return Numbers(
        table="rating",
        candidate=fixture_metrics(mae=0.78),
        method="maml",
        production=production,
        production_method="maml",
        same_users=True,
        basis="re-evaluated",
    )


def test_each_rule_type_names_and_reads_its_reference():
    numbers = rating(production=fixture_metrics(mae=0.75))
    absolute = AbsoluteRule(metric="mae", max=1.0)
    margin = MarginRule(metric="mae", over="global_mean")
    regression = RegressionRule(metric="mae", max_regression=0.02)
    assert absolute.reference(numbers, "new_user", "5") is None
    assert margin.reference(numbers, "new_user", "5") == pytest.approx(0.95)
    assert regression.reference(numbers, "new_user", "5") == pytest.approx(0.75)
    assert absolute.reference_name("production v3") is None
    assert margin.reference_name("production v3") == "global_mean"
    assert regression.reference_name("production v3") == "production v3"
    assert [absolute.threshold, margin.threshold, regression.threshold] == [1.0, 0.0, 0.02]


def test_rules_judge_direction_aware_and_fail_closed():
    margin = MarginRule(metric="ndcg@5", over="item_bias", min_improvement=0.01)
    met = margin.judge(0.90, 0.85, method="maml", reference_name="item_bias")
    assert met.passed and met.observed == pytest.approx(0.05)
    regression = RegressionRule(metric="mae", max_regression=0.02)
    worse = regression.judge(0.80, 0.75, method="maml", reference_name="production v1")
    assert not worse.passed and worse.observed == pytest.approx(0.05)
    missing = regression.judge(0.80, None, method="maml", reference_name="production v1")
    assert not missing.passed and "of production v1 missing" in missing.detail
    bounds = AbsoluteRule(metric="mae", min=0.1, max=0.5)
    assert bounds.judge(0.78, None, method="maml", reference_name="").detail == "0.7800 > max 0.5"


def test_one_loop_applies_every_rule_type():
    numbers = rating(production=fixture_metrics(mae=0.75))
    rules = [
        AbsoluteRule(metric="mae", max=1.0, cells="mean"),
        MarginRule(metric="mae", over="global_mean", cells="mean"),
        RegressionRule(metric="mae", max_regression=0.05, cells="mean"),
    ]
    checks = [rule_checks(rule, numbers, production="production v2")[0] for rule in rules]
    assert [check.kind for check in checks] == ["absolute", "margin", "regression"]
    assert [check.reference_name for check in checks] == [None, "global_mean", "production v2"]
    assert all(check.passed and check.support_size == "6 cells" for check in checks)


def test_decide_is_pure_and_takes_its_time_from_the_caller():
    def run(decided_at: datetime):
        return decide(
            load_policy(),
            model="metarec",
            artifact_digest="d" * 64,
            candidate_metrics=fixture_metrics(),
            candidate_method="maml",
            decided_at=decided_at,
        )

    first, second = run(NOON), run(NOON)
    assert first == second and first.decided_at == NOON
    assert run(datetime(2026, 12, 1, 12, 0)).decided_at == NOON  # naive: taken as UTC
    with pytest.raises(TypeError):
        decide(
            GatePolicy(), model="m", artifact_digest="d", candidate_metrics={}, candidate_method="x"
        )


def test_gate_artifact_passes_the_time_on(ranked_artifact, ranking):
    artifact: Path = ranked_artifact("cand", ranking=ranking(), seed=2)
    decision = gate_artifact(artifact, policy=load_policy(), model="metarec", decided_at=NOON)
    assert decision.decided_at == NOON
    before = datetime.now(UTC)
    default = gate_artifact(artifact, policy=load_policy(), model="metarec").decided_at
    assert before <= default <= datetime.now(UTC)  # the I/O edge reads the clock, not decide

"""The gate on versions trained on implicit events: ranking rules judge, rating rules are skipped.

An event version's card has ``label == "event"`` and no rating metrics; a production version of
the other kind learnt from other data, so the rules comparing with it are skipped and it is not
evaluated.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from metarec.gate.decision import EVENT_SKIPPED, GateDecision, decide
from metarec.gate.policy import GatePolicy, RegressionRule, load_policy
from metarec.gate.run import gate_artifact
from metarec.registry import Registry
from metarec.testing.registry import fixture_metrics, fixture_ranking, write_fixture_artifact

DECIDED_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NDCG_MARGIN = "margin: ranking ndcg@20 better than popularity by ≥ 0 (mean, new_user)"
NDCG_REGRESSION = "regression: ranking ndcg@20 worse than production by ≤ 0.02 (mean, new_user)"
NO_RANKING_RULE = "coverage: a ranking rule judges a version trained on implicit events"
RATING_TO_EVENT = (
    "skipped: production v3 learnt from ratings and the candidate from implicit events: "
    "different training data, so their numbers are not comparable"
)
EVENT_TO_RATING = (
    "skipped: production v3 learnt from implicit events and the candidate from ratings: "
    "different training data, so their numbers are not comparable"
)


def own_rating_rules(policy: GatePolicy) -> set[str]:
    """The labels of the policy's absolute and margin rules on the rating table."""
    return {rule.label() for rule in [*policy.absolute, *policy.margins] if rule.table == "rating"}


def event(policy: GatePolicy, ranking=None, **kwargs) -> GateDecision:
    """The decision on an event candidate: no rating metrics, the ranking table only."""
    return decide(
        policy,
        model="metarec",
        artifact_digest="e" * 64,
        decided_at=DECIDED_AT,
        candidate_metrics={},
        candidate_method="maml",
        candidate_ranking=fixture_ranking() if ranking is None else ranking,
        candidate_label="event",
        **kwargs,
    )


def production_numbers(label: str, *, ranker: float = 0.30, **kwargs) -> dict:
    return {
        "production_metrics": fixture_metrics() if label == "rating" else None,
        "production_method": "maml",
        "production_version": 3,
        "production_label": label,
        "comparison_basis": "re-evaluated",
        "production_ranking": fixture_ranking(ranker=ranker),
        **kwargs,
    }


def test_event_candidate_passes_on_ranking_rules_with_rating_rules_skipped():
    policy = load_policy()
    decision = event(policy)
    assert decision.accepted, decision.summary()
    assert decision.candidate_label == "event" and decision.production_label is None
    skipped = decision.skipped
    assert {c.rule for c in skipped} == own_rating_rules(policy)
    assert len(skipped) == 5  # one per rating rule, not one per cell
    for check in skipped:
        assert (check.skipped, check.passed, check.table) == (True, True, "rating")
        assert check.detail == EVENT_SKIPPED
        assert check.value is None and check.observed is None
    [judged] = [c for c in decision.checks if not c.skipped]
    assert (judged.rule, judged.table, judged.passed) == (NDCG_MARGIN, "ranking", True)
    assert not any(c.kind == "coverage" for c in decision.checks)  # no "card has no metrics"
    assert decision.summary() == "accepted (1 checks passed, 5 skipped)"
    assert decision.ranking_summary[0].candidate == pytest.approx(0.30)


def test_event_candidate_fails_when_its_ranking_rules_fail():
    decision = event(load_policy(), fixture_ranking(ranker=0.18))
    assert not decision.accepted
    [broken] = decision.broken
    assert broken.rule == NDCG_MARGIN and not broken.skipped
    assert broken.observed == pytest.approx(-0.02)
    assert decision.summary() == f"rejected, broken: {NDCG_MARGIN}"


def test_event_candidate_without_ranking_table_fails_its_ranking_rules():
    decision = event(load_policy(), {})
    assert not decision.accepted
    assert [c.rule for c in decision.broken] == [NDCG_MARGIN]
    assert "the card has no ranking metrics" in decision.broken[0].detail


def test_policy_without_a_ranking_rule_rejects_an_event_candidate():
    policy = load_policy()
    rating_only = policy.model_copy(
        update={
            kind: [rule for rule in getattr(policy, kind) if rule.table == "rating"]
            for kind in ("absolute", "margins", "regression")
        }
    )
    decision = event(rating_only)
    assert not decision.accepted
    [broken] = decision.broken
    assert (broken.rule, broken.kind, broken.table) == (NO_RANKING_RULE, "coverage", "ranking")
    assert broken.detail.startswith("the policy has no ranking rule")
    assert "{table: ranking, metric: ndcg@20, over: popularity" in broken.detail
    assert "\n" not in broken.detail
    assert {c.rule for c in decision.skipped} == own_rating_rules(rating_only)
    # An empty policy does not pass it either.
    assert not event(GatePolicy()).accepted


def test_ranking_regression_alone_without_production_does_not_pass_vacuously():
    rule = RegressionRule(table="ranking", metric="ndcg@20", max_regression=0.02)
    decision = event(GatePolicy(regression=[rule]))
    assert not decision.accepted
    [broken] = decision.broken
    assert broken.rule == NO_RANKING_RULE
    assert broken.detail.startswith("no ranking rule of the policy applies")


def test_event_candidate_vs_rating_production_skips_every_production_comparison():
    policy = load_policy()
    # production's numbers would break the ranking regression if they were compared
    decision = event(policy, **production_numbers("rating", ranker=0.90, same_users=False))
    assert decision.accepted, decision.summary()
    assert (decision.candidate_label, decision.production_label) == ("event", "rating")
    regressions = [c for c in decision.checks if c.kind == "regression"]
    assert {c.rule for c in regressions} == {
        *(r.label() for r in policy.regression if r.table == "rating"),
        NDCG_REGRESSION,
    }
    assert all(c.skipped and c.passed for c in regressions)
    [ranking_regression] = [c for c in regressions if c.table == "ranking"]
    assert ranking_regression.detail == RATING_TO_EVENT
    assert ranking_regression.reference_name == "production v3"
    assert {c.detail for c in regressions if c.table == "rating"} == {EVENT_SKIPPED}
    assert not any(c.kind == "comparability" for c in decision.checks)
    assert decision.ranking_summary[0].production is None
    assert decision.ranking_comparison_basis is None
    assert any("production v3 learnt from ratings" in note for note in decision.notes)


def test_rating_candidate_vs_event_production_skips_every_production_comparison():
    policy = load_policy()
    decision = decide(
        policy,
        model="metarec",
        artifact_digest="d" * 64,
        decided_at=DECIDED_AT,
        candidate_metrics=fixture_metrics(),
        candidate_method="maml",
        candidate_ranking=fixture_ranking(),
        **production_numbers("event", ranker=0.90, same_users=False),
    )
    assert decision.accepted, decision.summary()
    assert (decision.candidate_label, decision.production_label) == ("rating", "event")
    regressions = [c for c in decision.checks if c.kind == "regression"]
    assert len(regressions) == len(policy.regression)  # one skipped check per rule
    assert all(c.skipped and c.detail == EVENT_TO_RATING for c in regressions)
    # the candidate's own rating rules still judge it
    assert not any(c.skipped for c in decision.checks if c.kind in ("absolute", "margin"))
    assert not any(c.kind == "comparability" for c in decision.checks)
    assert decision.ranking_summary[0].production is None

    worse = decide(
        policy,
        model="metarec",
        artifact_digest="d" * 64,
        decided_at=DECIDED_AT,
        candidate_metrics=fixture_metrics(mae=0.99),
        candidate_method="maml",
        candidate_ranking=fixture_ranking(),
        **production_numbers("event"),
    )
    assert not worse.accepted
    assert {c.rule for c in worse.broken} >= {
        "margin: mae better than global_mean by ≥ 0.02 (mean)"
    }


def test_event_candidate_vs_event_production_compares_the_ranking_table():
    policy = load_policy()
    ok = event(policy, **production_numbers("event", ranker=0.31))
    assert ok.accepted, ok.summary()
    [regression] = [c for c in ok.checks if c.kind == "regression" and c.table == "ranking"]
    assert not regression.skipped
    assert (regression.value, regression.reference) == (pytest.approx(0.30), pytest.approx(0.31))
    assert {c.detail for c in ok.checks if c.kind == "regression" and c.table == "rating"} == {
        EVENT_SKIPPED
    }
    assert ok.ranking_summary[0].production == pytest.approx(0.31)

    worse = event(policy, **production_numbers("event", ranker=0.40))
    assert [c.rule for c in worse.broken] == [NDCG_REGRESSION]

    # Only the ranking table's comparability counts (the rating table is not compared).
    other_users = event(
        policy, **production_numbers("event", same_users=False, ranking_same_users=False)
    )
    assert [(c.kind, c.table) for c in other_users.broken] == [("comparability", "ranking")]


def test_skipped_checks_are_stored_and_old_decisions_still_read():
    decision = event(load_policy())
    stored = json.loads(decision.model_dump_json())
    assert stored["candidate_label"] == "event"
    assert [c["skipped"] for c in stored["checks"]].count(True) == 5
    assert GateDecision.model_validate(stored) == decision
    for check in stored["checks"]:
        del check["skipped"]
    del stored["candidate_label"], stored["production_label"]
    old = GateDecision.model_validate(stored)  # a decision stored before event versions
    assert old.candidate_label == "rating" and old.skipped == []


# --- gate_artifact: production from the registry ------------------------------------------


def open_registry(tmp_path: Path) -> Registry:
    return Registry.connect(
        url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "artifacts")
    )


class Recorder:
    """An evaluator that records its calls and returns ``result``."""

    def __init__(self, result):
        self.result = result
        self.calls: list[list[str]] = []

    def __call__(self, artifact_dir: Path, users):
        self.calls.append(sorted(path.name for path in artifact_dir.iterdir()))
        return self.result


@pytest.mark.parametrize(
    ("candidate", "production_kind", "note"),
    [("event", "rating", RATING_TO_EVENT), ("rating", "event", EVENT_TO_RATING)],
)
def test_production_of_the_other_kind_is_not_evaluated(
    tmp_path: Path, production, candidate, production_kind, note
):
    evaluate = Recorder(fixture_metrics(mae=0.5))  # would break every rating regression
    evaluate_ranking = Recorder(fixture_ranking(ranker=0.9))  # and the ranking regression
    with open_registry(tmp_path) as registry:
        version = production(registry, ranking=fixture_ranking(), seed=1, label=production_kind)
        artifact = write_fixture_artifact(tmp_path / "cand", seed=9, label=candidate)
        decision = gate_artifact(
            artifact,
            policy=load_policy(),
            model="metarec",
            registry=registry,
            evaluate=evaluate,
            evaluate_ranking=evaluate_ranking,
        )
    assert (evaluate.calls, evaluate_ranking.calls) == ([], [])
    assert decision.accepted, decision.summary()
    assert (decision.candidate_label, decision.production_label) == (candidate, production_kind)
    assert decision.production_version == version
    assert decision.comparison_basis.startswith(f"not compared: metarec:v{version} learnt from")
    [ranking_regression] = [c for c in decision.checks if c.rule == NDCG_REGRESSION]
    assert ranking_regression.skipped
    assert ranking_regression.detail == note.replace("v3", f"v{version}")


def test_event_production_is_re_evaluated_on_its_ranking_only(tmp_path: Path, production):
    evaluate = Recorder(fixture_metrics())
    evaluate_ranking = Recorder(fixture_ranking(ranker=0.40))
    with open_registry(tmp_path) as registry:
        production(registry, ranking=fixture_ranking(), seed=1, label="event")
        artifact = write_fixture_artifact(tmp_path / "cand", seed=2, label="event")
        decision = gate_artifact(
            artifact,
            policy=load_policy(),
            model="metarec",
            registry=registry,
            evaluate=evaluate,
            evaluate_ranking=evaluate_ranking,
        )
    assert evaluate.calls == []  # an event candidate has no rating metrics to compare
    assert evaluate_ranking.calls == [["model_card.json", "ranker.safetensors"]]
    assert decision.production_label == "event"
    assert "ranking re-evaluated" in (decision.ranking_comparison_basis or "")
    [broken] = decision.broken
    assert broken.rule == NDCG_REGRESSION
    assert (broken.value, broken.reference) == (pytest.approx(0.30), pytest.approx(0.40))


def test_event_production_stored_ranking_is_compared(tmp_path: Path, production):
    with open_registry(tmp_path) as registry:
        production(registry, ranking=fixture_ranking(ranker=0.31), seed=1, label="event")
        artifact = write_fixture_artifact(tmp_path / "cand", seed=2, label="event")
        decision = gate_artifact(artifact, policy=load_policy(), model="metarec", registry=registry)
    assert decision.accepted, decision.summary()
    [check] = [c for c in decision.checks if c.rule == NDCG_REGRESSION]
    assert not check.skipped and check.reference == pytest.approx(0.31)
    assert decision.comparison_basis == (
        "rating metrics not compared (both versions learnt from implicit events)"
    )

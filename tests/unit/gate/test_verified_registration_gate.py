"""The gate verifies the candidate's card by re-evaluating it (issue 20, item 6).

The candidate's numbers used to come from its own card only, so a forged card passed. With the
candidate's training set, the gate re-evaluates it on the card's held-out users and rejects a
card whose numbers do not match; without one, the decision says they are unverified.
"""

import copy
from pathlib import Path

import pytest
from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact
from metarec.gate.verification import (
    MISMATCH,
    RULE,
    UNVERIFIED,
    UNVERIFIED_BASIS,
    VERIFIED_BASIS,
    Reevaluation,
)
from metarec.testing.registry import fixture_metrics, fixture_ranking, write_fixture_artifact

FINGERPRINT = f"sha256:{2:064x}"  # the fixture card's dataset_fingerprint for seed 2
USERS = {"new_user": [1, 2, 3], "new_item": [1, 2, 3], "new_user_new_item": [1, 2, 3]}


class Evaluator:
    """Returns fixed numbers, recording the folders and users it was called with."""

    def __init__(self, numbers):
        self.numbers = numbers
        self.calls = []

    def __call__(self, artifact_dir: Path, users):
        self.calls.append((artifact_dir, dict(users)))
        return self.numbers


def reevaluation(rating, ranking, *, fingerprint: str | None = FINGERPRINT) -> Reevaluation:
    return Reevaluation(
        training_set="ts.parquet",
        fingerprint=fingerprint,
        evaluate=rating,
        evaluate_ranking=ranking,
    )


def gate(folder: Path, again: Reevaluation | None):
    return gate_artifact(folder, policy=load_policy(), model="metarec", reevaluation=again)


def test_a_forged_card_is_rejected_by_the_re_evaluation(tmp_path):
    # The card claims MAE 0.70; the weights really reach 0.93 on the card's held-out users.
    forged = write_fixture_artifact(tmp_path / "forged", seed=2, mae=0.70)
    rating = Evaluator(fixture_metrics(mae=0.93))
    ranking = Evaluator(fixture_ranking())
    decision = gate(forged, reevaluation(rating, ranking))
    assert not decision.accepted
    [broken] = decision.broken
    assert broken.rule == RULE and broken.kind == "verification"
    assert broken.detail.startswith(MISMATCH)
    assert "new_item/10/maml/mae: card 0.7000, re-evaluated 0.9300" in broken.detail
    assert broken.observed == pytest.approx(0.23 * 1.25)  # the worst: rmse
    assert decision.metrics_basis == UNVERIFIED_BASIS
    assert f"broken: {RULE}" in decision.summary()
    assert [folder for folder, _ in rating.calls] == [forged]
    assert rating.calls[0][1] == USERS  # the card's own held-out users


def test_an_honest_card_is_verified_within_the_tolerance(tmp_path):
    honest = write_fixture_artifact(tmp_path / "honest", seed=2)
    again = copy.deepcopy(fixture_metrics())
    again["new_user"]["5"]["maml"]["mae"] += 0.004  # another device's last digits
    decision = gate(honest, reevaluation(Evaluator(again), Evaluator(fixture_ranking())))
    assert decision.accepted, decision.summary()
    assert decision.checks[0].rule == RULE and decision.checks[0].passed
    assert decision.metrics_basis == VERIFIED_BASIS
    assert any(note.startswith("the card's metrics were verified") for note in decision.notes)


def test_without_a_training_set_the_decision_says_unverified(tmp_path):
    decision = gate(write_fixture_artifact(tmp_path / "a", seed=2), None)
    assert decision.accepted
    assert UNVERIFIED in decision.notes
    assert decision.metrics_basis == UNVERIFIED_BASIS
    assert all(check.kind != "verification" for check in decision.checks)


def test_a_training_set_the_card_was_not_trained_on_is_a_failed_verification(tmp_path):
    folder = write_fixture_artifact(tmp_path / "a", seed=2)
    rating = Evaluator(fixture_metrics())
    decision = gate(
        folder, reevaluation(rating, Evaluator(fixture_ranking()), fingerprint="sha256:other")
    )
    assert not decision.accepted
    [broken] = decision.broken
    assert broken.rule == RULE and "pass the training set the candidate was trained on" in (
        broken.detail
    )
    assert rating.calls == []


def test_a_forged_ranking_table_is_rejected(tmp_path):
    forged = write_fixture_artifact(tmp_path / "forged", seed=2, ranker_ndcg=0.45)
    decision = gate(
        forged,
        reevaluation(Evaluator(fixture_metrics()), Evaluator(fixture_ranking(ranker=0.18))),
    )
    assert not decision.accepted
    [broken] = decision.broken
    assert "ranking new_item/random@10/ranker/hit@10: card 0.9000, re-evaluated 0.3600" in (
        broken.detail
    )


def test_a_re_evaluation_without_the_candidates_method_cannot_verify_it(tmp_path):
    folder = write_fixture_artifact(tmp_path / "a", seed=2)
    again = copy.deepcopy(fixture_metrics())
    for by_size in again.values():
        for cell in by_size.values():
            del cell["maml"]
    decision = gate(folder, reevaluation(Evaluator(again), Evaluator(fixture_ranking())))
    assert not decision.accepted
    [broken] = decision.broken
    assert "has none of the card's numbers for rating: maml" in broken.detail

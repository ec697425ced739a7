"""The gate catches corruption that keeps every row valid (issue 20, item 8).

The reference profile is built from one clean sample of a fixed population (``make_sample(0)``);
the candidate is another clean sample (seed 1), as next week's training set would be. Each
corruption keeps every row valid (every Great Expectations expectation still passes) and must
fail the named reference check, with a reason that says what is wrong.
"""

import json

import numpy as np
import pandas as pd
import pytest
from metarec.validation.profile import ReferenceProfile
from metarec.validation.reference_checks import CHECKS, run_reference_checks
from metarec.validation.runner import run_suite

from .conftest import NOW, make_profile, make_sample


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_sample(0)


@pytest.fixture(scope="module")
def profile(reference) -> ReferenceProfile:
    return make_profile(reference)


@pytest.fixture(scope="module")
def candidate() -> pd.DataFrame:
    return make_sample(1)


def _permute(column):
    def corrupt(frame, rng):
        ids = frame[column].unique()
        return frame.assign(
            **{column: frame[column].map(dict(zip(ids, rng.permutation(ids), strict=True)))}
        )

    return corrupt


def _label_noise(frame, rng):
    noisy = rng.random(len(frame)) < 0.3
    return frame.assign(rating=np.where(noisy, rng.integers(1, 6, len(frame)), frame["rating"]))


def _label_leak(frame, rng):
    leaked = frame["rating"] + rng.normal(0, 0.3, len(frame))
    return frame.assign(rating_mean=leaked.clip(0, 5).astype("float64"))


def _shifted_into_the_past(frame, rng):
    times = frame["event_timestamp"].copy()
    times.iloc[::10] -= pd.Timedelta(days=5 * 365)
    return frame.assign(event_timestamp=times)


def _new_ids(rows, frame):
    return rows.assign(interaction_id=np.arange(1, len(rows) + 1) + frame["interaction_id"].max())


def _near_duplicates(frame, rng):
    resent = frame.sample(frac=0.05, random_state=1)
    resent = resent.assign(event_timestamp=resent["event_timestamp"] + pd.Timedelta(seconds=5))
    return pd.concat([frame, _new_ids(resent, frame)], ignore_index=True)


def _one_user_flood(frame, rng):
    """User 1 rates 150 more items, copied from other users' rows: a normal rating mix."""
    own = frame[frame["user_id"] == 1].iloc[0]
    copied = frame[frame["user_id"] != 1].sample(n=150, random_state=2)
    attributes = {
        column: pd.Series(own[column], index=copied.index, dtype=frame[column].dtype)
        for column in ("age", "age_bucket", "gender", "occupation")
    }
    copied = copied.assign(user_id=1, **attributes)
    copied["event_timestamp"] += pd.Timedelta(seconds=3)
    return pd.concat([frame, _new_ids(copied, frame)], ignore_index=True)


CORRUPTIONS = {
    "user_ids_permuted": (_permute("user_id"), {"user_attributes_vs_reference"}),
    "item_ids_permuted": (
        _permute("item_id"),
        {"item_attributes_vs_reference", "item_popularity_rank_vs_reference"},
    ),
    "label_noise": (_label_noise, {"rating_agreement_vs_reference"}),
    "label_leaks_into_a_feature": (
        _label_leak,
        {"label_correlation_vs_reference(rating_mean)"},
    ),
    "timestamps_shifted_into_the_past": (
        _shifted_into_the_past,
        {"event_time_range_vs_reference"},
    ),
    "near_duplicate_events": (_near_duplicates, {"near_duplicate_events_vs_reference"}),
    "one_user_flood": (_one_user_flood, {"top_user_volume_vs_reference"}),
}

REASONS = {
    "user_ids_permuted": "user ids may be permuted",
    "item_ids_permuted": "item ids may be permuted",
    "label_noise": "labels may be noisy",
    "label_leaks_into_a_feature": "the label may leak into this feature",
    "timestamps_shifted_into_the_past": "timestamps may be shifted into the past",
    "near_duplicate_events": "events may be replayed",
    "one_user_flood": "a flood of ratings from one user",
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_each_valid_looking_corruption_fails_only_the_named_check(case, candidate, profile, suite):
    corrupt, expected = CORRUPTIONS[case]
    outcomes = run_suite(
        corrupt(candidate, np.random.default_rng(5)), suite, now=NOW, profile=profile
    )
    failed = {o.name: o for o in outcomes if not o.success}
    assert expected <= set(failed), f"{case}: failed {sorted(failed)}"
    # Every row stays valid: no expectation of the suite itself fails, only reference checks.
    expectations = {spec.key for spec in suite.expectations}
    assert not expectations & set(failed), f"{case}: {sorted(expectations & set(failed))}"
    for name in expected:
        assert REASONS[case] in failed[name].observed
        assert failed[name].kind == "drift" and not failed[name].skipped


def test_a_clean_sample_of_another_seed_passes_the_whole_suite(profile, candidate, suite):
    outcomes = run_suite(candidate, suite, now=NOW, profile=profile)
    assert [o.name for o in outcomes if not o.success] == []
    names = {o.name.split("(")[0] for o in outcomes if o.type.startswith("metarec_")}
    assert names == set(CHECKS)
    assert not [o.name for o in outcomes if o.skipped]


@pytest.mark.parametrize("seed", [2, 3, 4, 5, 6])
def test_clean_samples_of_other_seeds_pass_every_reference_check(seed, profile, suite):
    outcomes = run_reference_checks(
        make_sample(seed),
        suite.reference_checks,
        profile.statistics.reference,
        profile_label=profile.label,
    )
    assert [(o.name, o.observed) for o in outcomes if not o.success or o.skipped] == []


def test_the_same_population_at_another_size_passes(reference, profile, suite):
    half = make_sample(7).groupby("user_id").head(8)  # fewer ratings per user, same people
    outcomes = run_reference_checks(
        half, suite.reference_checks, profile.statistics.reference, profile_label=profile.label
    )
    assert [(o.name, o.observed) for o in outcomes if not o.success] == []


def test_a_profile_without_the_new_statistics_skips_them_with_a_reason(profile, candidate, suite):
    stored = json.loads(profile.model_dump_json())
    del stored["statistics"]["reference"]  # a profile written before the reference checks
    old = ReferenceProfile.model_validate_json(json.dumps(stored))
    corrupted = _permute("user_id")(candidate, np.random.default_rng(5))
    outcomes = [
        o
        for o in run_suite(corrupted, suite, now=NOW, profile=old)
        if o.type.startswith("metarec_")
    ]
    assert [o.name for o in outcomes] == list(CHECKS)
    assert all(o.success and o.skipped for o in outcomes)
    assert "predates this check" in outcomes[0].reason
    assert outcomes[0].observed.startswith("skipped: reference profile meta_training@v1")


def test_the_profile_round_trips_through_json_with_the_same_verdicts(profile, candidate, suite):
    again = ReferenceProfile.model_validate_json(profile.model_dump_json())
    assert again.statistics.reference == profile.statistics.reference
    corrupted = _permute("item_id")(candidate, np.random.default_rng(5))
    verdicts = [
        [
            (o.name, o.success)
            for o in run_reference_checks(
                corrupted, suite.reference_checks, p.statistics.reference, profile_label="x"
            )
        ]
        for p in (profile, again)
    ]
    assert verdicts[0] == verdicts[1]


def test_uninformative_statistics_skip_with_a_reason(clean, suite):
    # Every user rates every item once: popularity has no ranking; 2 shared ids are too few.
    profile = make_profile(clean)
    outcomes = {
        o.name: o
        for o in run_reference_checks(
            clean.head(24), suite.reference_checks, profile.statistics.reference, profile_label="x"
        )
    }
    popularity = outcomes["item_popularity_rank_vs_reference"]
    assert popularity.skipped and "uniform" in popularity.reason
    users = outcomes["user_attributes_vs_reference"]
    assert users.skipped and "2 user ids in common" in users.reason


def test_outcomes_read_as_reasons_and_bounds(profile, candidate, suite):
    corrupted = _shifted_into_the_past(candidate, None)
    outcome = next(
        o
        for o in run_reference_checks(
            corrupted, suite.reference_checks, profile.statistics.reference, profile_label="x"
        )
        if o.name == "event_time_range_vs_reference"
    )
    assert outcome.type == "metarec_event_time_range_vs_reference"
    assert outcome.observed.startswith(f"{len(corrupted.index[::10]):,} events (10.0%) lie before")
    assert outcome.expected.startswith(">= 1997-")  # one reference span before its first event
    assert json.loads(outcome.model_dump_json())["reason"] == outcome.reason


def test_a_column_of_an_unexpected_type_fails_the_check_instead_of_crashing(
    profile, candidate, suite
):
    as_text = candidate.assign(event_timestamp=candidate["event_timestamp"].astype(str))
    outcomes = {
        o.name: o
        for o in run_reference_checks(
            as_text, suite.reference_checks, profile.statistics.reference, profile_label="x"
        )
    }
    assert list(outcomes)[:3] == list(CHECKS[:3])
    broken = outcomes["event_time_range_vs_reference"]
    assert not broken.success and broken.exception.startswith("TypeError")
    assert outcomes["user_attributes_vs_reference"].success

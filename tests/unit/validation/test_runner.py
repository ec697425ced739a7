import json

import pandas as pd
import pytest
from metarec.validation.runner import derived_batches, jsonable, run_suite

from .conftest import NOW, make_profile


def _failed(frame, suite, profile):
    return {o.name: o for o in run_suite(frame, suite, now=NOW, profile=profile) if not o.success}


def test_clean_training_set_passes_every_expectation(clean, suite):
    outcomes = run_suite(clean, suite, now=NOW, profile=make_profile(clean))
    keys = [s.key for s in suite.expectations]
    assert [o.name for o in outcomes][: len(keys)] == keys
    # Then MetaRec's reference checks (tests/unit/validation/test_reference_checks.py).
    assert {o.type.split("_")[0] for o in outcomes[len(keys) :]} == {"metarec"}
    assert [o.name for o in outcomes if not o.success] == []
    by_name = {o.name: o for o in outcomes}
    assert by_name["mean_rating_vs_reference"].observed_value == pytest.approx(
        clean["rating"].mean()
    )
    assert by_name["not_empty"].observed_value == len(clean)
    json.dumps([o.model_dump(mode="json") for o in outcomes])  # JSON-able throughout


def test_without_a_profile_only_integrity_expectations_run(clean, suite):
    outcomes = run_suite(clean, suite, now=NOW, profile=None)
    assert {o.kind for o in outcomes} == {"integrity"}
    assert len(outcomes) == len(suite.integrity)


def _set(column, value, every=7):
    def corrupt(frame):
        frame = frame.copy()
        frame.loc[frame.index[::every], column] = value
        return frame

    return corrupt


CORRUPTIONS = {
    "rating_out_of_range": (_set("rating", 9), {"rating_in_range"}),
    "null_user_id": (
        lambda f: f.assign(user_id=f["user_id"].astype("Int64").mask(f.index % 5 == 0)),
        {"expect_column_values_to_not_be_null(user_id)", "expect_column_type_to_be(user_id)"},
    ),
    "duplicated_rows": (
        lambda f: pd.concat([f, f.head(3)], ignore_index=True),
        {"no_duplicate_ratings", "expect_column_values_to_be_unique(interaction_id)"},
    ),
    "unknown_occupation": (
        _set("occupation", "astronaut"),
        {"expect_column_values_to_be_in_set(occupation)"},
    ),
    "unknown_gender": (_set("gender", "X"), {"expect_column_values_to_be_in_set(gender)"}),
    "unknown_genre": (_set("genres", "Drama|Space Opera"), {"genres_known"}),
    "implausible_age": (_set("age", 250), {"age_plausible"}),
    "missing_column": (lambda f: f.drop(columns=["occupation"]), {"columns_present"}),
    "ratings_as_strings": (
        lambda f: f.assign(rating=f["rating"].astype(str)),
        {"expect_column_type_to_be(rating)"},
    ),
    "future_timestamps": (
        _set("event_timestamp", pd.Timestamp("2030-01-01", tz="UTC")),
        {"no_future_events"},
    ),
    "all_ratings_5": (
        lambda f: f.assign(rating=5),
        {"mean_rating_vs_reference", "share_of_rating_5_vs_reference"},
    ),
    "fewer_ratings_per_user": (
        lambda f: f.groupby("user_id").head(3),
        {"ratings_per_user_quantiles_vs_reference", "row_count_vs_reference"},
    ),
    "empty": (lambda f: f.iloc[:0], {"not_empty", "row_count_vs_reference"}),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_each_corruption_fails_the_named_expectation(case, clean, suite):
    corrupt, expected = CORRUPTIONS[case]
    failed = _failed(corrupt(clean), suite, make_profile(clean))
    assert expected <= set(failed), f"{case}: failed {sorted(failed)}"


def test_missing_column_reports_which_and_fails_its_checks(clean, suite):
    failed = _failed(clean.drop(columns=["occupation"]), suite, make_profile(clean))
    assert failed["columns_present"].observed == "missing: occupation"
    assert "occupation" in failed["expect_column_values_to_be_in_set(occupation)"].exception


def test_missing_user_id_fails_the_per_user_drift_check_with_a_reason(clean, suite):
    failed = _failed(clean.drop(columns=["user_id"]), suite, make_profile(clean))
    reason = failed["ratings_per_user_quantiles_vs_reference"].exception
    assert reason == "column 'user_id' is missing from the training set"


def test_unexpected_values_are_reported_with_examples(clean, suite):
    failed = _failed(_set("occupation", "astronaut")(clean), suite, make_profile(clean))
    outcome = failed["expect_column_values_to_be_in_set(occupation)"]
    assert outcome.unexpected_count == len(clean.index[::7])
    assert "astronaut" in outcome.partial_unexpected_list
    assert "astronaut" in outcome.observed


def test_derived_batches(clean):
    batches = derived_batches(clean)
    per_user = batches["ratings_per_user"]
    assert len(per_user) == clean["user_id"].nunique()
    assert per_user["ratings_per_user"].sum() == len(clean)
    shares = batches["rating_shares"]
    assert shares.mean().sum() == pytest.approx(1.0)


def test_jsonable_converts_numpy_pandas_and_missing_values():
    import numpy as np

    value = {
        "a": np.int64(3),
        "b": np.float64("nan"),
        "c": pd.Timestamp("2020-01-01", tz="UTC"),
        "d": [pd.NA, pd.NaT, np.bool_(True)],
        1: (1.5,),
    }
    assert jsonable(value) == {
        "a": 3,
        "b": None,
        "c": "2020-01-01T00:00:00+00:00",
        "d": [None, None, True],
        "1": [1.5],
    }

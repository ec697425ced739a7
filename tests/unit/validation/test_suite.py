import re

import pytest
import yaml
from metarec.data.schema import GENRES
from metarec.errors import ExpectationSuiteError
from metarec.validation.runner import _gx_expectation, genre_regex, suite_parameters
from metarec.validation.suite import SUITES_DIR, BatchName, load_suite, resolve_kwargs

from .conftest import NOW, make_profile, make_training_set


def test_every_feature_service_with_a_suite_loads_and_names_match_files():
    files = sorted(SUITES_DIR.glob("*.yaml"))
    assert [f.stem for f in files] == ["meta_training"]
    suite = load_suite("meta_training")
    assert suite.feature_service == "meta_training"
    assert re.fullmatch(r"\d+\.\d+\.\d+", suite.version)


def test_suite_covers_every_issue_requirement(suite):
    keys = {spec.key for spec in suite.expectations}
    for required in (
        "columns_present",
        "expect_column_type_to_be(rating)",
        "expect_column_values_to_not_be_null(user_id)",
        "expect_column_values_to_not_be_null(item_id)",
        "rating_in_range",
        "age_plausible",
        "expect_column_values_to_be_in_set(gender)",
        "expect_column_values_to_be_in_set(occupation)",
        "genres_known",
        "no_duplicate_ratings",
        "no_future_events",
        "not_empty",
        "row_count_vs_reference",
        "mean_rating_vs_reference",
        "ratings_per_user_quantiles_vs_reference",
        *(f"share_of_rating_{r}_vs_reference" for r in range(1, 6)),
    ):
        assert required in keys


def test_drift_expectations_are_exactly_those_using_the_profile(suite):
    drift = {spec.key for spec in suite.drift_expectations}
    assert drift == {
        "row_count_vs_reference",
        "mean_rating_vs_reference",
        "ratings_per_user_quantiles_vs_reference",
        *(f"share_of_rating_{r}_vs_reference" for r in range(1, 6)),
    }
    assert len(suite.integrity) + len(drift) == len(suite.expectations)
    assert {spec.batch for spec in suite.integrity} == {BatchName.TRAINING_SET}


def test_every_expectation_builds_as_a_gx_expectation(suite):
    params = suite_parameters(suite, now=NOW, profile=make_profile(make_training_set()))
    for spec in suite.expectations:
        expectation = _gx_expectation(spec, resolve_kwargs(spec.kwargs, params))
        assert expectation.expectation_type == spec.type


def test_unknown_suite_names_the_known_ones():
    with pytest.raises(ExpectationSuiteError, match="meta_training"):
        load_suite("no_such_service")


def test_duplicate_names_are_rejected(tmp_path):
    spec = {
        "name": "svc",
        "version": "1.0.0",
        "feature_service": "svc",
        "expectations": [
            {"type": "expect_column_to_exist", "kwargs": {"column": "a"}},
            {"type": "expect_column_to_exist", "kwargs": {"column": "a"}},
        ],
    }
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ExpectationSuiteError, match="repeated"):
        load_suite("svc", suites_dir=tmp_path)


def test_suite_must_declare_its_own_feature_service(tmp_path):
    spec = {"name": "x", "version": "1", "feature_service": "other", "expectations": []}
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ExpectationSuiteError, match="declares feature_service 'other'"):
        load_suite("svc", suites_dir=tmp_path)


def test_unknown_placeholder_is_an_error():
    with pytest.raises(ExpectationSuiteError, match="nope"):
        resolve_kwargs({"min_value": "${nope}"}, {"now": 1})
    assert resolve_kwargs({"a": ["${x}", "y"], "b": {"c": "${x}"}}, {"x": 3}) == {
        "a": [3, "y"],
        "b": {"c": 3},
    }


def test_genre_regex_accepts_known_tokens_only():
    pattern = re.compile(genre_regex())
    assert pattern.match("Children's|Film-Noir|Sci-Fi")
    assert all(pattern.match(g) for g in GENRES)
    for bad in ("", "Drama|", "|Drama", "Drama|Space Opera", "drama", "Drama||Comedy"):
        assert not pattern.match(bad)


def test_profile_bounds_follow_the_tolerances(suite):
    frame = make_training_set()
    profile = make_profile(frame)
    params = suite_parameters(suite, now=NOW, profile=profile)
    stats = profile.statistics
    assert params["profile.row_count.min"] <= stats.row_count <= params["profile.row_count.max"]
    assert params["profile.mean_rating.max"] - params["profile.mean_rating.min"] == pytest.approx(
        2 * suite.drift.mean_rating_abs
    )
    for r in range(1, 6):
        assert 0 <= params[f"profile.rating_share.{r}.min"] <= stats.rating_shares[r]
        assert stats.rating_shares[r] <= params[f"profile.rating_share.{r}.max"] <= 1
    assert params["profile.ratings_per_user.quantiles"] == [0.1, 0.5, 0.9]

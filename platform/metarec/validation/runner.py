"""Run an expectation suite on a training set with Great Expectations 1.x.

Each run uses its own ephemeral GE context (in memory, no files, no analytics, no progress
bars) with one pandas data source and one whole-dataframe batch per table the suite targets:
the training set itself and two small tables derived from it (ratings per user, rating-value
indicators). Results come back as :class:`ExpectationOutcome` values, JSON-able and named by
the suite's stable expectation names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from metarec.data.schema import AGE_BUCKETS, GENDERS, GENRE_SEPARATOR, GENRES, OCCUPATIONS
from metarec.errors import ExpectationSuiteError, ReferenceProfileNotFoundError
from metarec.validation.declared import feature_parameters, vector_lengths
from metarec.validation.outcome import ExpectationKind, ExpectationOutcome, jsonable
from metarec.validation.profile import RATING_VALUES, ProfileStatistics, ReferenceProfile
from metarec.validation.reference_checks import run_reference_checks
from metarec.validation.suite import (
    BatchName,
    DriftTolerances,
    ExpectationSpec,
    SuiteSpec,
    resolve_kwargs,
)

_META_KEY = "metarec_name"
_PARTIAL_UNEXPECTED = 10


def genre_regex(genres: Iterable[str] = GENRES, *, separator: str = GENRE_SEPARATOR) -> str:
    """A regex matching a ``separator``-joined list of known genres (at least one)."""
    token = "(?:" + "|".join(re.escape(g) for g in sorted(genres, key=len, reverse=True)) + ")"
    return f"^{token}(?:{re.escape(separator)}{token})*$"


def suite_parameters(
    suite: SuiteSpec, *, now: datetime, profile: ReferenceProfile | None
) -> dict[str, Any]:
    """Values for the suite's ``${...}`` placeholders.

    Args:
        suite: The suite (its drift tolerances turn profile statistics into bounds).
        now: The validation time (timezone-aware).
        profile: The reference profile; without it only integrity placeholders are filled.

    Returns:
        Placeholder name → value.
    """
    parameters: dict[str, Any] = {
        "now": pd.Timestamp(now).tz_convert(UTC),
        "now.year": now.year,
        "known.genders": list(GENDERS),
        "known.occupations": list(OCCUPATIONS),
        "known.age_buckets": [label for _, label in AGE_BUCKETS],
        "known.genre_regex": genre_regex(),
    }
    if profile is None:
        return parameters
    stats = profile.statistics
    drift = suite.drift
    low, high = drift.row_count_ratio
    parameters["profile.row_count.min"] = math.floor(stats.row_count * low)
    parameters["profile.row_count.max"] = math.ceil(stats.row_count * high)
    parameters.update(_rating_parameters(stats, drift))
    parameters.update(feature_parameters(stats.features, drift))
    quantiles = list(drift.ratings_per_user_quantiles)
    missing = [q for q in quantiles if q not in stats.ratings_per_user_quantiles]
    if missing:
        raise ReferenceProfileNotFoundError(
            f"Reference profile {profile.label} has no ratings-per-user quantiles {missing} "
            f"(suite {suite.name} {suite.version} compares them).",
            fix="build a new profile with this suite: `metarec features profile`.",
        )
    rel = drift.ratings_per_user_rel
    parameters["profile.ratings_per_user.quantiles"] = quantiles
    parameters["profile.ratings_per_user.value_ranges"] = [
        [
            stats.ratings_per_user_quantiles[q] * (1 - rel),
            stats.ratings_per_user_quantiles[q] * (1 + rel),
        ]
        for q in quantiles
    ]
    return parameters


def _rating_parameters(stats: ProfileStatistics, drift: DriftTolerances) -> dict[str, Any]:
    """The mean rating and rating share bounds (none when the reference has no ratings)."""
    if stats.mean_rating is None:
        return {}
    parameters: dict[str, Any] = {
        "profile.mean_rating.min": stats.mean_rating - drift.mean_rating_abs,
        "profile.mean_rating.max": stats.mean_rating + drift.mean_rating_abs,
    }
    for rating in RATING_VALUES:
        share = stats.rating_shares.get(rating, 0.0)
        parameters[f"profile.rating_share.{rating}.min"] = max(0.0, share - drift.rating_share_abs)
        parameters[f"profile.rating_share.{rating}.max"] = min(1.0, share + drift.rating_share_abs)
    return parameters


def derived_batches(
    frame: pd.DataFrame, *, vector_columns: Sequence[str] = ()
) -> dict[BatchName, pd.DataFrame | str]:
    """Build every batch from the training set; a string explains why one cannot be built.

    Args:
        frame: The training set.
        vector_columns: Vector features whose lengths form the ``feature_shapes`` batch.
    """
    batches: dict[BatchName, pd.DataFrame | str] = {
        BatchName.TRAINING_SET: frame,
        BatchName.FEATURE_SHAPES: vector_lengths(frame, list(vector_columns)),
    }
    if "user_id" in frame.columns:
        counts = frame.groupby("user_id", sort=False, dropna=False).size()
        batches[BatchName.RATINGS_PER_USER] = pd.DataFrame(
            {"ratings_per_user": counts.to_numpy(dtype="int64")}
        )
    else:
        batches[BatchName.RATINGS_PER_USER] = "column 'user_id' is missing from the training set"
    if "rating" in frame.columns:
        rating = frame["rating"]
        batches[BatchName.RATING_SHARES] = pd.DataFrame(
            {f"rating_share_{r}": (rating == r).to_numpy(dtype="float64") for r in RATING_VALUES}
        )
    else:
        batches[BatchName.RATING_SHARES] = "column 'rating' is missing from the training set"
    return batches


def _gx_context(*, progress_bars: bool = False) -> Any:
    """A fresh in-memory GE context: no files, no analytics, progress bars only when asked."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=progress_bars, metric_calculations=progress_bars),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _gx_expectation(spec: ExpectationSpec, kwargs: dict[str, Any]) -> Any:
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    try:
        return ExpectationConfiguration(
            type=spec.type, kwargs=kwargs, meta={_META_KEY: spec.key}
        ).to_domain_obj()
    except Exception as exc:
        raise ExpectationSuiteError(
            f"Expectation {spec.key!r} ({spec.type}) cannot be built: {exc}",
            fix="correct its type or kwargs in the suite file (Great Expectations 1.x names).",
        ) from exc


def run_suite(
    frame: pd.DataFrame,
    suite: SuiteSpec,
    *,
    now: datetime,
    profile: ReferenceProfile | None,
    progress_bars: bool = False,
) -> list[ExpectationOutcome]:
    """Run ``suite`` on a training set.

    Args:
        frame: The training set.
        suite: The suite.
        now: The validation time (timezone-aware); events after it fail.
        profile: Reference profile. None runs the integrity expectations only.
        progress_bars: Let Great Expectations show its own (tqdm) progress bars.

    Returns:
        One outcome per expectation, in suite order, then (with a profile, when the suite has
        a ``reference_checks`` block) one per reference check.
    """
    specs = suite.expectations if profile is not None else suite.integrity
    parameters = suite_parameters(suite, now=now, profile=profile)
    results = _run_expectations(
        frame, suite, specs, parameters=parameters, progress_bars=progress_bars
    )
    if profile is not None and suite.reference_checks is not None:
        results += run_reference_checks(
            frame,
            suite.reference_checks,
            profile.statistics.reference,
            profile_label=profile.label,
        )
    return results


def _run_expectations(
    frame: pd.DataFrame,
    suite: SuiteSpec,
    specs: list[ExpectationSpec],
    *,
    parameters: dict[str, Any],
    progress_bars: bool,
) -> list[ExpectationOutcome]:
    """Run ``specs`` with Great Expectations, one batch at a time; outcomes in ``specs`` order."""
    import great_expectations as gx

    vectors = [spec.kwargs["column"] for spec in specs if spec.batch is BatchName.FEATURE_SHAPES]
    batches = derived_batches(frame, vector_columns=vectors)
    outcomes: dict[str, ExpectationOutcome] = {}
    context = _gx_context(progress_bars=progress_bars)
    source = context.data_sources.add_pandas("metarec")
    for batch_name in BatchName:
        batch_specs = [spec for spec in specs if spec.batch is batch_name]
        if not batch_specs:
            continue
        resolved = {spec.key: resolve_kwargs(spec.kwargs, parameters) for spec in batch_specs}
        data = batches[batch_name]
        if isinstance(data, str):
            for spec in batch_specs:
                outcomes[spec.key] = _outcome(spec, resolved[spec.key], success=False, error=data)
            continue
        gx_suite = gx.ExpectationSuite(
            name=f"{suite.name}.{batch_name.value}",
            expectations=[_gx_expectation(spec, resolved[spec.key]) for spec in batch_specs],
        )
        asset = source.add_dataframe_asset(batch_name.value)
        batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
            batch_parameters={"dataframe": data}
        )
        validation = batch.validate(
            gx_suite,
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": _PARTIAL_UNEXPECTED,
            },
        )
        by_name = {spec.key: spec for spec in batch_specs}
        for result in validation.results:
            key = (result.expectation_config.meta or {}).get(_META_KEY)
            spec = by_name[key]
            outcomes[key] = _outcome_from_gx(spec, resolved[key], result)
    return [outcomes[spec.key] for spec in specs]


def _kind(spec: ExpectationSpec) -> ExpectationKind:
    return "drift" if spec.is_drift else "integrity"


def _outcome(
    spec: ExpectationSpec,
    kwargs: dict[str, Any],
    *,
    success: bool,
    error: str | None,
    **observed: Any,
) -> ExpectationOutcome:
    """The outcome of ``spec`` run with ``kwargs``; ``observed``: what the run measured."""
    return ExpectationOutcome(
        name=spec.key,
        type=spec.type,
        kind=_kind(spec),
        batch=spec.batch.value,
        description=spec.description,
        kwargs=jsonable(kwargs),
        success=success,
        exception=error,
        **observed,
    )


def _outcome_from_gx(
    spec: ExpectationSpec, kwargs: dict[str, Any], result: Any
) -> ExpectationOutcome:
    details = dict(result.result or {})
    error = _exception_message(result.exception_info or {})
    observed = details.get("observed_value")
    mismatched = (details.get("details") or {}).get("mismatched")
    if isinstance(mismatched, dict) and mismatched.get("missing"):
        # Column-set expectations: what matters is which columns are missing.
        observed = {"missing": mismatched["missing"]}
    unexpected = details.get("unexpected_count")
    percent = details.get("unexpected_percent")
    return _outcome(
        spec,
        kwargs,
        success=bool(result.success) and error is None,
        error=error,
        observed_value=jsonable(observed),
        unexpected_count=None if unexpected is None else int(unexpected),
        unexpected_percent=None if percent is None else float(percent),
        partial_unexpected_list=jsonable(details.get("partial_unexpected_list") or []),
    )


def _exception_message(info: dict[str, Any]) -> str | None:
    """The message of an error GE caught: flat, or nested per metric (GE 1.x map metrics)."""
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "the expectation raised an error")
    for nested in info.values():
        if isinstance(nested, dict) and (
            nested.get("raised_exception") or nested.get("exception_message")
        ):
            message = str(nested.get("exception_message") or "the expectation raised an error")
            message = message.strip().splitlines()[-1] if message.strip() else message
            return message if len(message) <= 200 else message[:197] + "..."
    return None

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
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from metarec.data.schema import AGE_BUCKETS, GENDERS, GENRE_SEPARATOR, GENRES, OCCUPATIONS
from metarec.errors import ExpectationSuiteError, ReferenceProfileNotFoundError
from metarec.validation.declared import feature_parameters, vector_lengths
from metarec.validation.profile import RATING_VALUES, ProfileStatistics, ReferenceProfile
from metarec.validation.suite import (
    BatchName,
    DriftTolerances,
    ExpectationSpec,
    SuiteSpec,
    resolve_kwargs,
)

ExpectationKind = Literal["integrity", "drift", "lineage"]
_META_KEY = "metarec_name"
_PARTIAL_UNEXPECTED = 10
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


class ExpectationOutcome(BaseModel):
    """The result of one expectation, JSON-able."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: str
    kind: ExpectationKind
    batch: str
    description: str = ""
    kwargs: dict[str, Any]
    success: bool
    observed_value: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    partial_unexpected_list: list[Any] = []
    exception: str | None = None

    @property
    def observed(self) -> str:
        """A short, human-readable observation for tables and reports."""
        if self.exception:
            return f"error: {self.exception}"
        if self.unexpected_count is not None and self.observed_value is None:
            if self.unexpected_count == 0:
                return "0 unexpected"
            examples = ", ".join(repr(v) for v in self.partial_unexpected_list[:3])
            percent = f" ({self.unexpected_percent:.3g}%)" if self.unexpected_percent else ""
            return f"{self.unexpected_count:,} unexpected{percent}, e.g. {examples}"
        value = self.observed_value
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, dict) and "missing" in value:
            return "missing: " + ", ".join(str(column) for column in value["missing"])
        if isinstance(value, dict) and "values" in value:
            return ", ".join(
                f"q{q:g}={v}" for q, v in zip(value["quantiles"], value["values"], strict=False)
            )
        if isinstance(value, list) and len(value) > 8:
            return f"{len(value)} columns"
        return str(value)

    @property
    def expected(self) -> str:
        """A short, human-readable statement of what the expectation requires."""
        kwargs = self.kwargs
        if "type_" in kwargs:
            return str(kwargs["type_"])
        if "value_set" in kwargs:
            return f"one of {len(kwargs['value_set'])} known values"
        if "regex" in kwargs:
            return "known tokens only"
        if "column_set" in kwargs:
            return f"{len(kwargs['column_set'])} columns present"
        if "column_list" in kwargs:
            return "unique (" + ", ".join(kwargs["column_list"]) + ")"
        if "quantile_ranges" in kwargs:
            ranges = kwargs["quantile_ranges"]
            return ", ".join(
                f"q{q:g} in [{_fmt(low)}, {_fmt(high)}]"
                for q, (low, high) in zip(ranges["quantiles"], ranges["value_ranges"], strict=False)
            )
        if "manifest_fingerprint" in kwargs:
            return "= manifest fingerprint"
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if low is not None and high is not None:
            return f"[{_fmt(low)}, {_fmt(high)}]"
        if low is not None:
            return f">= {_fmt(low)}"
        if high is not None:
            return f"<= {_fmt(high)}"
        if self.type.endswith("_to_not_be_null"):
            return "no nulls"
        if self.type.endswith("_to_be_unique"):
            return "unique"
        return ""


def _fmt(value: Any) -> str:
    if isinstance(value, str) and _ISO_TIME.match(value):
        return value[:19] + "Z" if value.endswith("+00:00") else value
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


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
        One outcome per expectation, in suite order.
    """
    import great_expectations as gx

    specs = suite.expectations if profile is not None else suite.integrity
    parameters = suite_parameters(suite, now=now, profile=profile)
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


def jsonable(value: Any) -> Any:
    """Convert GE/pandas/numpy values into plain JSON values (NaN and NA become None)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray | pd.Series):
        return [jsonable(item) for item in value]
    return str(value)

"""Expectation suites per feature service: versioned YAML in ``validation/suites/``.

A suite file lists Great Expectations 1.x expectations (``type`` + ``kwargs``), the batch each
one runs on, and the drift tolerances that turn a reference profile into bounds. String values
written ``"${name}"`` are placeholders filled in at validation time (:func:`resolve_kwargs`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from metarec.errors import ExpectationSuiteError

SUITES_DIR = Path(__file__).resolve().parent / "suites"
# Suites for training sets of a team's own tables (``table`` snapshots), per feature service.
TABLE_SUITES_DIR = SUITES_DIR / "table"
_PLACEHOLDER = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


class BatchName(StrEnum):
    """The tables an expectation can run on (see the suite file's header)."""

    TRAINING_SET = "training_set"
    RATINGS_PER_USER = "ratings_per_user"
    RATING_SHARES = "rating_shares"
    FEATURE_SHAPES = "feature_shapes"  # per row: the length of each vector feature


class DriftTolerances(BaseModel):
    """How far a training set may move from the reference profile before the gate fails."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    row_count_ratio: tuple[float, float] = Field(
        default=(0.5, 2.0), description="Rows within [low, high] x the reference row count."
    )
    mean_rating_abs: float = Field(default=0.25, ge=0, description="Mean rating ± this.")
    rating_share_abs: float = Field(
        default=0.05, ge=0, description="Each rating value's share ± this."
    )
    ratings_per_user_quantiles: tuple[float, ...] = Field(
        default=(0.1, 0.5, 0.9), description="Quantiles of ratings per user that are compared."
    )
    ratings_per_user_rel: float = Field(
        default=0.5, ge=0, description="Each quantile within ± this fraction of the reference."
    )
    feature_range_margin: float = Field(
        default=0.1,
        ge=0,
        description="Numeric features within the reference [min, max] ± this share of its width.",
    )


class ReferenceCheckTolerances(BaseModel):
    """Margins of MetaRec's reference checks (valid-looking corruption), over the profile's values.

    Each bound is the reference profile's own value of the statistic (measured on the accepted
    training set) widened by one of these margins; see docs/validation.md.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute_mismatch_abs: float = Field(
        default=0.02, ge=0, le=1, description="Shared ids whose attributes changed: ref + this."
    )
    popularity_rank_correlation_abs: float = Field(
        default=0.25, ge=0, le=2, description="Item-popularity Spearman >= expected - this."
    )
    rating_error_rel: float = Field(
        default=0.10, ge=0, description="Error vs reference item means <= ref x (1 + this)."
    )
    label_correlation_abs: float = Field(
        default=0.25, ge=0, le=1, description="|corr(feature, label)| <= ref + this."
    )
    min_common_ids: int = Field(
        default=10, ge=1, description="Fewer shared users or items than this: the check skips."
    )
    time_range_spans: float = Field(
        default=1.0, ge=0, description="Earliest event >= ref earliest - this x ref time span."
    )
    near_duplicate_seconds: float = Field(
        default=60.0, gt=0, description="Same user, item, rating within this many seconds."
    )
    near_duplicate_share_abs: float = Field(
        default=0.001, ge=0, le=1, description="Share of near-duplicate rows <= ref + this."
    )
    top_user_volume_rel: float = Field(
        default=0.6, ge=0, description="Top user / q0.99 of the others <= ref x (1 + this)."
    )


class ExpectationSpec(BaseModel):
    """One expectation of a suite file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    batch: BatchName = BatchName.TRAINING_SET
    name: str | None = Field(default=None, description="Stable name; default: type(column).")
    description: str = ""

    @property
    def key(self) -> str:
        """The name reports, results and errors use for this expectation."""
        if self.name:
            return self.name
        column = self.kwargs.get("column")
        if column is None and "column_list" in self.kwargs:
            column = ",".join(self.kwargs["column_list"])
        return f"{self.type}({column})" if column else self.type

    @property
    def placeholders(self) -> set[str]:
        """Names of every ``${...}`` placeholder in the kwargs."""
        return set(_find_placeholders(self.kwargs))

    @property
    def is_drift(self) -> bool:
        """True when the expectation compares against the reference profile."""
        return any(name.startswith("profile.") for name in self.placeholders)


class SuiteSpec(BaseModel):
    """A versioned expectation suite for one feature service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    feature_service: str
    description: str = ""
    drift: DriftTolerances = Field(default_factory=DriftTolerances)
    reference_checks: ReferenceCheckTolerances | None = Field(
        default=None,
        description="MetaRec's reference checks (valid-looking corruption); None: not run.",
    )
    expectations: list[ExpectationSpec]

    @model_validator(mode="after")
    def _unique_keys(self) -> SuiteSpec:
        keys = [spec.key for spec in self.expectations]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(f"expectation names must be unique; repeated: {duplicates}")
        return self

    @property
    def integrity(self) -> list[ExpectationSpec]:
        """Expectations that need no reference profile."""
        return [spec for spec in self.expectations if not spec.is_drift]

    @property
    def drift_expectations(self) -> list[ExpectationSpec]:
        """Expectations that compare against the reference profile."""
        return [spec for spec in self.expectations if spec.is_drift]


def suite_path(feature_service: str, *, suites_dir: Path = SUITES_DIR) -> Path:
    """The suite file of a feature service."""
    return suites_dir / f"{feature_service}.yaml"


def load_suite(feature_service: str, *, suites_dir: Path = SUITES_DIR) -> SuiteSpec:
    """Load and check the suite of ``feature_service``.

    Args:
        feature_service: Feast feature service name (the suite file's stem).
        suites_dir: Folder holding the suite files (:data:`TABLE_SUITES_DIR` for training sets
            of a team's own tables).

    Returns:
        The suite.

    Raises:
        ExpectationSuiteError: There is no suite for the service, or the file is invalid.
    """
    path = suite_path(feature_service, suites_dir=suites_dir)
    if not path.is_file():
        known = sorted(p.stem for p in suites_dir.glob("*.yaml"))
        raise ExpectationSuiteError(
            f"No expectation suite for feature service {feature_service!r} ({path} not found; "
            f"suites exist for {known}).",
            fix=f"add {path.name} to {suites_dir}, or validate a training set built from one of "
            f"{known}.",
        )
    try:
        suite = SuiteSpec.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ExpectationSuiteError(
            f"Expectation suite {path} is invalid ({exc}).",
            fix="correct the suite file; see docs/validation.md for its format.",
        ) from exc
    if suite.feature_service != feature_service:
        raise ExpectationSuiteError(
            f"{path} declares feature_service {suite.feature_service!r}, not {feature_service!r}.",
            fix="name each suite file after the feature service it declares.",
        )
    return suite


def _find_placeholders(value: Any) -> list[str]:
    if isinstance(value, str):
        match = _PLACEHOLDER.match(value)
        return [match.group(1)] if match else []
    if isinstance(value, dict):
        return [name for item in value.values() for name in _find_placeholders(item)]
    if isinstance(value, list | tuple):
        return [name for item in value for name in _find_placeholders(item)]
    return []


def resolve_kwargs(value: Any, parameters: dict[str, Any]) -> Any:
    """Replace every ``"${name}"`` string in ``value`` by ``parameters[name]``.

    Args:
        value: Expectation kwargs (nested dicts and lists).
        parameters: Placeholder values.

    Returns:
        A copy with placeholders replaced.

    Raises:
        ExpectationSuiteError: A placeholder has no value.
    """
    if isinstance(value, str):
        match = _PLACEHOLDER.match(value)
        if not match:
            return value
        name = match.group(1)
        if name not in parameters:
            raise ExpectationSuiteError(
                f"Unknown placeholder ${{{name}}} in an expectation suite.",
                fix=f"use one of: {', '.join(sorted(parameters))}.",
            )
        return parameters[name]
    if isinstance(value, dict):
        return {key: resolve_kwargs(item, parameters) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [resolve_kwargs(item, parameters) for item in value]
    return value

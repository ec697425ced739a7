"""Expectations and reference statistics derived from each feature's type.

A training set's manifest lists the features whose checks follow from their type (a ``table``
snapshot's declared features, the fields of a team's own Feast views). Each gets expectations
named after it, so a failing result names the feature:

=============  ===========================================================================
type           expectations
=============  ===========================================================================
every one      ``<name>_not_null`` (unless nullable)
int, float     ``<name>_in_reference_range``: within the reference [min, max], widened by
               the suite's ``feature_range_margin`` (drift)
category       ``<name>_in_reference_categories``: one of the reference's values (drift)
vector         ``<name>_dimension``: every vector has the declared length (the reference's
               when none is declared)
=============  ===========================================================================
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from metarec.data.table_schema import FeatureType
from metarec.features.declared import DeclaredFeature
from metarec.features.training_set import TrainingSetManifest
from metarec.validation.suite import (
    SUITES_DIR,
    TABLE_SUITES_DIR,
    BatchName,
    DriftTolerances,
    ExpectationSpec,
    SuiteSpec,
    load_suite,
)

_NUMERIC = (FeatureType.INT, FeatureType.FLOAT)


class FeatureStatistics(BaseModel):
    """What the reference profile records of one feature (by its type)."""

    model_config = ConfigDict(frozen=True)

    type: FeatureType
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    dim: int | None = None


def _profile_key(feature: DeclaredFeature, statistic: str) -> str:
    return f"${{profile.feature.{feature.name}.{statistic}}}"


def feature_expectations(feature: DeclaredFeature) -> list[ExpectationSpec]:
    """The expectations of one feature, each named after it."""
    name, column = feature.name, {"column": feature.name}
    specs: list[ExpectationSpec] = []
    if not feature.nullable:
        specs.append(
            ExpectationSpec(
                name=f"{name}_not_null",
                type="expect_column_values_to_not_be_null",
                kwargs=column,
                description=f"Feature {name} ({feature.type.value}) has no missing values.",
            )
        )
    if feature.type in _NUMERIC:
        specs.append(
            ExpectationSpec(
                name=f"{name}_in_reference_range",
                type="expect_column_values_to_be_between",
                kwargs={
                    **column,
                    "min_value": _profile_key(feature, "min"),
                    "max_value": _profile_key(feature, "max"),
                },
                description=f"Feature {name} lies within the reference range.",
            )
        )
    if feature.type is FeatureType.CATEGORY:
        specs.append(
            ExpectationSpec(
                name=f"{name}_in_reference_categories",
                type="expect_column_values_to_be_in_set",
                kwargs={**column, "value_set": _profile_key(feature, "categories")},
                description=f"Feature {name} takes only the reference's values.",
            )
        )
    if feature.type is FeatureType.VECTOR:
        dim = [feature.dim] if feature.dim is not None else _profile_key(feature, "dims")
        specs.append(
            ExpectationSpec(
                name=f"{name}_dimension",
                type="expect_column_values_to_be_in_set",
                batch=BatchName.FEATURE_SHAPES,
                kwargs={**column, "value_set": dim},
                description=f"Every {name} vector has {feature.dim or 'the reference'} values.",
            )
        )
    return specs


def suite_for(manifest: TrainingSetManifest) -> SuiteSpec:
    """The suite of a training set: its service's file, plus each checked feature's expectations.

    Training sets over a team's own tables use :data:`TABLE_SUITES_DIR`; MovieLens ones the
    static suite (with expectations only for a team's own views, if any).

    Raises:
        ExpectationSuiteError: No valid suite file for the feature service.
    """
    folder = TABLE_SUITES_DIR if manifest.table_snapshot else SUITES_DIR
    suite = load_suite(manifest.feature_service, suites_dir=folder)
    added = [spec for f in manifest.declared_features for spec in feature_expectations(f)]
    if not added:
        return suite
    return suite.model_copy(update={"expectations": [*suite.expectations, *added]})


def vector_lengths(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The ``feature_shapes`` batch: per row, each vector column's length (missing stays NA)."""
    lengths = {
        column: frame[column].map(lambda v: pd.NA if v is None else len(v)).astype("Int64")
        for column in columns
        if column in frame.columns
    }
    return pd.DataFrame(lengths, index=frame.index)


def feature_statistics(
    frame: pd.DataFrame, features: list[DeclaredFeature]
) -> dict[str, FeatureStatistics]:
    """The reference statistics of each checked feature present in ``frame``."""
    stats: dict[str, FeatureStatistics] = {}
    for feature in features:
        if feature.name not in frame.columns:
            continue
        values = frame[feature.name].dropna()
        extra: dict[str, Any] = {}
        if feature.type in _NUMERIC and len(values):
            extra = {"min": float(values.min()), "max": float(values.max())}
        elif feature.type is FeatureType.CATEGORY:
            extra = {"categories": sorted({str(value) for value in values})}
        elif feature.type is FeatureType.VECTOR and len(values):
            extra = {"dim": int(values.map(len).mode().iloc[0])}
        stats[feature.name] = FeatureStatistics(type=feature.type, **extra)
    return stats


def feature_parameters(
    stats: dict[str, FeatureStatistics], drift: DriftTolerances
) -> dict[str, Any]:
    """The ``${profile.feature.<name>.*}`` placeholder values from the reference statistics."""
    parameters: dict[str, Any] = {}
    for name, item in stats.items():
        prefix = f"profile.feature.{name}"
        if item.min is not None and item.max is not None:
            margin = (item.max - item.min) * drift.feature_range_margin
            parameters[f"{prefix}.min"] = item.min - margin
            parameters[f"{prefix}.max"] = item.max + margin
        if item.categories is not None:
            parameters[f"{prefix}.categories"] = item.categories
        if item.dim is not None:
            parameters[f"{prefix}.dims"] = [item.dim]
    return parameters

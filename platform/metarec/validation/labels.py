"""Label checks: do the ratings still agree with the reference, and does no feature leak them?

Label noise (ratings replaced by random valid ratings) keeps every row valid and barely moves
the rating shares; it shows as ratings that lie further from the reference's per-item mean
rating than the reference's own ratings do (cross-fitted: item means of one half of the
reference predict the other half). A feature that carries the label shows as a correlation
with the rating far beyond the one the reference has.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metarec.validation.identity import MAX_IDS
from metarec.validation.outcome import ExpectationOutcome, at_most, check_outcome, skipped_outcome
from metarec.validation.suite import ReferenceCheckTolerances

LABEL = "rating"
# A reference item mean is shrunk toward the global mean as if it had this many more ratings.
ITEM_PRIOR = 10
_NOT_FEATURES = frozenset({"interaction_id", "user_id", "item_id", LABEL})


class LabelStatistics(BaseModel):
    """What the reference records of its labels."""

    model_config = ConfigDict(frozen=True)

    global_mean: float
    item_means: dict[int, float] = Field(description="Item id → shrunk mean rating.")
    error: float = Field(description="Cross-fitted mean absolute error against item means.")
    feature_correlations: dict[str, float] = Field(
        default_factory=dict, description="Numeric feature → |correlation with the rating|."
    )


def _item_means(frame: pd.DataFrame) -> tuple[pd.Series, float]:
    mean = float(frame[LABEL].mean())
    sums = frame.groupby("item_id")[LABEL].agg(["sum", "count"])
    return (sums["sum"] + ITEM_PRIOR * mean) / (sums["count"] + ITEM_PRIOR), mean


def rating_error(frame: pd.DataFrame, item_means: pd.Series, global_mean: float) -> float:
    """Mean absolute difference between each rating and its item's mean (global if unknown)."""
    predicted = frame["item_id"].map(item_means).astype("float64").fillna(global_mean)
    return float((frame[LABEL].astype("float64") - predicted).abs().mean())


def feature_correlations(frame: pd.DataFrame) -> dict[str, float]:
    """|Pearson correlation| of each numeric feature with the rating (0 when constant)."""
    label = frame[LABEL].astype("float64")
    found: dict[str, float] = {}
    for column in frame.columns:
        series = frame[column]
        if column in _NOT_FEATURES or pd.api.types.is_bool_dtype(series):
            continue
        if not pd.api.types.is_numeric_dtype(series):
            continue
        values = series.astype("float64")
        valid = values.notna() & label.notna()
        if valid.sum() < 3 or values[valid].nunique() < 2 or label[valid].nunique() < 2:
            found[column] = 0.0
            continue
        found[column] = abs(float(np.corrcoef(values[valid], label[valid])[0, 1]))
    return found


def label_statistics(frame: pd.DataFrame) -> LabelStatistics | None:
    """The label statistics of a reference training set (None without ratings or item ids)."""
    if LABEL not in frame.columns or "item_id" not in frame.columns or len(frame) < 2:
        return None
    order = np.random.default_rng(0).permutation(len(frame))
    halves = frame.iloc[order[: len(frame) // 2]], frame.iloc[order[len(frame) // 2 :]]
    errors = [rating_error(b, *_item_means(a)) for a, b in (halves, halves[::-1])]
    means, global_mean = _item_means(frame)
    active = frame["item_id"].value_counts().index[:MAX_IDS]
    return LabelStatistics(
        global_mean=global_mean,
        item_means={int(i): round(float(means[i]), 4) for i in active},
        error=float(np.mean(errors)),
        feature_correlations=feature_correlations(frame),
    )


def rating_agreement_check(
    frame: pd.DataFrame, stats: LabelStatistics, tolerances: ReferenceCheckTolerances
) -> ExpectationOutcome:
    """Do ratings lie as close to the reference's item means as the reference's own ratings?"""
    name = "rating_agreement_vs_reference"
    description = (
        "Mean absolute difference between each rating and the reference's mean rating of its "
        "item, against the reference's own (cross-fitted) difference (label noise shows here)."
    )
    if LABEL not in frame.columns or "item_id" not in frame.columns or frame.empty:
        return skipped_outcome(name, description=description, reason="no ratings to compare")
    means = pd.Series(stats.item_means, dtype="float64")
    error = rating_error(frame, means, stats.global_mean)
    bound = stats.error * (1 + tolerances.rating_error_rel)
    return at_most(
        name,
        description=description,
        value=error,
        bound=bound,
        reason=f"ratings differ from the reference's item means by {error:.3f} on average "
        f"> {bound:.3f} (reference {stats.error:.3f} + {tolerances.rating_error_rel:.0%}): "
        "labels may be noisy (ratings replaced at random) or item ids permuted",
    )


def label_leakage_checks(
    frame: pd.DataFrame, stats: LabelStatistics, tolerances: ReferenceCheckTolerances
) -> list[ExpectationOutcome]:
    """One check per numeric feature: its correlation with the rating within the reference's."""
    if LABEL not in frame.columns:
        return []
    outcomes: list[ExpectationOutcome] = []
    for column, value in feature_correlations(frame).items():
        reference = stats.feature_correlations.get(column)
        bound = min(1.0, (reference or 0.0) + tolerances.label_correlation_abs)
        known = f"reference {reference:.2f}" if reference is not None else "not in the reference"
        outcomes.append(
            check_outcome(
                f"label_correlation_vs_reference({column})",
                description=f"|correlation| of feature {column} with the rating stays within "
                "the reference's (the label leaking into a feature shows here).",
                value=value,
                max_value=bound,
                success=value <= bound,
                reason=f"feature {column} correlates with the rating at {value:.2f} > "
                f"{bound:.2f} ({known} + {tolerances.label_correlation_abs:.2f}): the label may "
                "leak into this feature",
            )
        )
    return outcomes

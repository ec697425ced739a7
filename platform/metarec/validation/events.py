"""Event checks: when the events happened, whether they repeat, and who produced them.

Three corruptions that keep every row valid: timestamps shifted far into the past (each still a
valid past time), near-duplicate events (the same user, item and rating a few seconds apart:
not exact duplicates, which the suite's uniqueness check already catches), and a flood of
ratings from one user with a normal rating mix (the per-user quantiles barely move).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metarec.validation.outcome import ExpectationOutcome, at_most, check_outcome, skipped_outcome
from metarec.validation.suite import ReferenceCheckTolerances

_NEAR_DUPLICATE_KEY = ["user_id", "item_id", "rating"]


class EventStatistics(BaseModel):
    """What the reference records of its events."""

    model_config = ConfigDict(frozen=True)

    first_event: datetime | None = None
    last_event: datetime | None = None
    near_duplicate_share: float | None = Field(
        default=None, description="Share of rows repeating an event within the window."
    )
    top_user_volume_ratio: float | None = Field(
        default=None, description="Top user's ratings / q0.99 of the other users' ratings."
    )


def near_duplicate_rows(frame: pd.DataFrame, *, seconds: float) -> int | None:
    """Rows repeating an earlier row's user, item and rating within ``seconds``.

    Returns:
        The number of such rows, or None when a column is missing.
    """
    columns = [*_NEAR_DUPLICATE_KEY, "event_timestamp"]
    if any(column not in frame.columns for column in columns):
        return None
    ordered = frame[columns].sort_values(columns, kind="stable")
    same = pd.Series(True, index=ordered.index)
    for column in _NEAR_DUPLICATE_KEY:
        same &= ordered[column].eq(ordered[column].shift())
    gap = ordered["event_timestamp"].diff().dt.total_seconds()
    return int((same & gap.le(seconds)).sum())


def top_user_volume_ratio(frame: pd.DataFrame) -> float | None:
    """Ratings of the most active user / the 0.99 quantile of the other users' ratings.

    Leaving the top user out of the quantile keeps the statistic meaningful for small
    populations (with 30 users it is the top user's lead over the runner-up).
    """
    if "user_id" not in frame.columns or frame.empty:
        return None
    counts = frame.groupby("user_id").size().sort_values()
    if len(counts) < 2:
        return None
    return float(counts.iloc[-1] / counts.iloc[:-1].quantile(0.99))


def event_statistics(frame: pd.DataFrame, *, near_duplicate_seconds: float) -> EventStatistics:
    """The event statistics of a reference training set."""
    fields: dict[str, object] = {"top_user_volume_ratio": top_user_volume_ratio(frame)}
    if "event_timestamp" in frame.columns and not frame.empty:
        times = frame["event_timestamp"]
        fields |= {
            "first_event": times.min().to_pydatetime(),
            "last_event": times.max().to_pydatetime(),
        }
    duplicates = near_duplicate_rows(frame, seconds=near_duplicate_seconds)
    if duplicates is not None and len(frame):
        fields["near_duplicate_share"] = duplicates / len(frame)
    return EventStatistics(**fields)


def time_range_check(
    frame: pd.DataFrame, stats: EventStatistics, tolerances: ReferenceCheckTolerances
) -> ExpectationOutcome:
    """Is no event far earlier than the reference's first one (one reference span by default)?"""
    name = "event_time_range_vs_reference"
    description = (
        "No event lies more than `time_range_spans` x the reference's time span before the "
        "reference's first event (timestamps shifted into the past show here)."
    )
    if stats.first_event is None or stats.last_event is None:
        return skipped_outcome(name, description=description, reason="the reference has no times")
    if "event_timestamp" not in frame.columns or frame.empty:
        return skipped_outcome(name, description=description, reason="no event times to compare")
    first, last = pd.Timestamp(stats.first_event), pd.Timestamp(stats.last_event)
    span = last - first
    bound = first - span * tolerances.time_range_spans
    times = frame["event_timestamp"]
    if times.isna().all():
        return skipped_outcome(name, description=description, reason="no event times to compare")
    early = int((times < bound).sum())
    earliest = times.min()
    return check_outcome(
        name,
        description=description,
        value=earliest.isoformat(),
        min_value=bound.isoformat(),
        success=early == 0,
        reason=f"{early:,} events ({early / len(frame):.1%}) lie before {bound:%Y-%m-%d}, "
        f"{tolerances.time_range_spans:g} x the reference's span ({span.days} days) before "
        f"its first event {first:%Y-%m-%d} (earliest here: {earliest:%Y-%m-%d}): timestamps "
        "may be shifted into the past",
    )


def near_duplicate_check(
    frame: pd.DataFrame, stats: EventStatistics, tolerances: ReferenceCheckTolerances
) -> ExpectationOutcome:
    """Are near-duplicate events no more common than in the reference?"""
    seconds = tolerances.near_duplicate_seconds
    name = "near_duplicate_events_vs_reference"
    description = (
        f"Share of rows repeating the same user, item and rating within {seconds:g} s stays "
        "within the reference's (replayed or double-sent events show here)."
    )
    if stats.near_duplicate_share is None:
        return skipped_outcome(name, description=description, reason="the reference has no share")
    rows = near_duplicate_rows(frame, seconds=seconds)
    if rows is None or frame.empty:
        return skipped_outcome(name, description=description, reason="no events to compare")
    share = rows / len(frame)
    bound = stats.near_duplicate_share + tolerances.near_duplicate_share_abs
    return at_most(
        name,
        description=description,
        value=share,
        bound=bound,
        reason=f"{rows:,} rows ({share:.2%}) repeat the same user, item and rating within "
        f"{seconds:g} s (at most {bound:.2%}): events may be replayed or double-sent",
    )


def top_user_volume_check(
    frame: pd.DataFrame, stats: EventStatistics, tolerances: ReferenceCheckTolerances
) -> ExpectationOutcome:
    """Has the most active user no more ratings, relative to the mean, than the reference allows?"""
    name = "top_user_volume_vs_reference"
    description = (
        "Ratings of the most active user / the 0.99 quantile of the other users' ratings stays "
        "within the reference's ratio x (1 + `top_user_volume_rel`) (a flood from one user "
        "shows here)."
    )
    ratio = top_user_volume_ratio(frame)
    if stats.top_user_volume_ratio is None or ratio is None:
        return skipped_outcome(name, description=description, reason="no users to compare")
    counts = frame.groupby("user_id").size()
    top = counts.idxmax()
    bound = stats.top_user_volume_ratio * (1 + tolerances.top_user_volume_rel)
    return at_most(
        name,
        description=description,
        value=ratio,
        bound=bound,
        reason=f"user {top} has {counts.max():,} ratings, {ratio:.1f} x the 0.99 quantile of "
        f"the other users > {bound:.1f} (reference {stats.top_user_volume_ratio:.1f} x "
        f"{1 + tolerances.top_user_volume_rel:g}): a flood of ratings from one user",
    )

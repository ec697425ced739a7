"""MetaRec's reference checks: corruption that keeps every row valid, judged against the profile.

Great Expectations checks a table on its own; these checks compare a training set with the
reference profile entity by entity (the same id's attributes, each item's mean rating and
popularity rank, each feature's correlation with the label, the event window, repeated
events, the most active user). They run after the suite's expectations when the suite has a
``reference_checks`` block, and come back as :class:`ExpectationOutcome` values (kind
``drift``, type ``metarec_<check>``) whose ``reason`` says what a failure means. A reference
profile built before these checks existed has no statistics for them: each is then skipped with
a reason (and passes), never an error.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from pydantic import BaseModel, ConfigDict

from metarec.validation.events import (
    EventStatistics,
    event_statistics,
    near_duplicate_check,
    time_range_check,
    top_user_volume_check,
)
from metarec.validation.identity import (
    IdentityStatistics,
    attribute_check,
    identity_statistics,
    item_popularity_check,
)
from metarec.validation.labels import (
    LabelStatistics,
    label_leakage_checks,
    label_statistics,
    rating_agreement_check,
)
from metarec.validation.outcome import ExpectationOutcome, errored_outcome, skipped_outcome
from metarec.validation.suite import ReferenceCheckTolerances

_DESCRIPTION = "A reference check (see docs/validation.md)."
CHECKS: tuple[str, ...] = (
    "user_attributes_vs_reference",
    "item_attributes_vs_reference",
    "item_popularity_rank_vs_reference",
    "rating_agreement_vs_reference",
    "label_correlation_vs_reference",
    "event_time_range_vs_reference",
    "near_duplicate_events_vs_reference",
    "top_user_volume_vs_reference",
)


class ReferenceStatistics(BaseModel):
    """The statistics of the reference profile that the reference checks compare against."""

    model_config = ConfigDict(frozen=True)

    identity: IdentityStatistics
    labels: LabelStatistics | None = None
    events: EventStatistics


def reference_statistics(
    frame: pd.DataFrame, tolerances: ReferenceCheckTolerances
) -> ReferenceStatistics:
    """Compute the reference-check statistics of an accepted training set."""
    return ReferenceStatistics(
        identity=identity_statistics(frame),
        labels=label_statistics(frame),
        events=event_statistics(frame, near_duplicate_seconds=tolerances.near_duplicate_seconds),
    )


def _skipped_all(reason: str) -> list[ExpectationOutcome]:
    return [skipped_outcome(name, description=_DESCRIPTION, reason=reason) for name in CHECKS]


def run_reference_checks(
    frame: pd.DataFrame,
    tolerances: ReferenceCheckTolerances,
    statistics: ReferenceStatistics | None,
    *,
    profile_label: str,
) -> list[ExpectationOutcome]:
    """Run every reference check on a training set.

    Args:
        frame: The training set.
        tolerances: The suite's margins.
        statistics: The reference profile's statistics; None for a profile built before these
            checks existed (each check is then skipped with a reason).
        profile_label: The profile, as results name it (``meta_training@v3``).

    Returns:
        One outcome per check (one per numeric feature for the label correlation check).
    """
    if statistics is None:
        return _skipped_all(
            f"reference profile {profile_label} predates this check (it has no reference-check "
            "statistics); build a new one with `metarec features profile` to enable it"
        )
    identity, events, labels = statistics.identity, statistics.events, statistics.labels
    checks: list[tuple[str, Callable[[], ExpectationOutcome | list[ExpectationOutcome]]]] = [
        (CHECKS[0], lambda: attribute_check(frame, identity, tolerances, entity="user")),
        (CHECKS[1], lambda: attribute_check(frame, identity, tolerances, entity="item")),
        (CHECKS[2], lambda: item_popularity_check(frame, identity, tolerances)),
    ]
    if labels is not None:
        checks += [
            (CHECKS[3], lambda: rating_agreement_check(frame, labels, tolerances)),
            (CHECKS[4], lambda: label_leakage_checks(frame, labels, tolerances)),
        ]
    checks += [
        (CHECKS[5], lambda: time_range_check(frame, events, tolerances)),
        (CHECKS[6], lambda: near_duplicate_check(frame, events, tolerances)),
        (CHECKS[7], lambda: top_user_volume_check(frame, events, tolerances)),
    ]
    outcomes: list[ExpectationOutcome] = []
    for name, check in checks:
        try:
            result = check()
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            # A column of an unexpected type: its type expectation fails too; never crash.
            outcomes.append(errored_outcome(name, description=_DESCRIPTION, error=exc))
            continue
        outcomes += result if isinstance(result, list) else [result]
    if labels is None:
        reason = f"reference profile {profile_label} has no ratings"
        outcomes[3:3] = [
            skipped_outcome(name, description=_DESCRIPTION, reason=reason) for name in CHECKS[3:5]
        ]
    return outcomes

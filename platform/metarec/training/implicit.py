"""Implicit events as the model's interactions: positive events, once per user and item.

A training set of implicit events (``label`` 1 for a positive event, 0 for one that is not,
``weight``, maybe ``event_type``; no ``rating``) becomes the interactions the ranker learns
from: each user's positive events, the first one per item (a later repeat of the same item adds
nothing a ranking could use), in time order. Each gets the ranking scale's "liked" value
(:data:`LIKED_VALUE`, the value of a 5-star rating), so that the ranking data, its tasks, the
EASE prior and the ranking metrics read events exactly as they read liked ratings.

Events that are not positive (for example views, when only clicks and purchases are declared
positive) are not used by the model: they stay in the snapshot. Event weights are not used yet:
every positive interaction counts alike.
"""

from __future__ import annotations

import pandas as pd

from metarec.errors import ModelInputsError

LIKED_VALUE = 5.0
LABEL = "label"


def is_event_training_set(df: pd.DataFrame) -> bool:
    """Whether ``df`` holds implicit events (a ``label`` column and no ``rating``)."""
    return "rating" not in df.columns and LABEL in df.columns


def positive_interactions(df: pd.DataFrame) -> pd.DataFrame:
    """Each user's positive events, the first per item, in time order, rated "liked".

    Args:
        df: A training set of implicit events in (user, time) order.

    Returns:
        The positive interactions with a ``rating`` column of :data:`LIKED_VALUE` (the other
        columns as in ``df``), index reset.

    Raises:
        ModelInputsError: No event is positive.
    """
    positives = df[df[LABEL].astype("int64") == 1]
    if positives.empty:
        raise ModelInputsError(
            "The training set has no positive event (every label is 0): nothing to learn "
            "which items users want.",
            fix="declare which event types are positive (`label: {kind: event, positive: "
            "[click, purchase]}` in the schema) and ingest again.",
        )
    order = [c for c in ("user_id", "event_timestamp", "item_id") if c in positives.columns]
    positives = positives.sort_values(order, kind="stable")
    first = positives.drop_duplicates(["user_id", "item_id"], keep="first")
    return first.assign(rating=LIKED_VALUE).reset_index(drop=True)

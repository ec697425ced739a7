"""The Feast offline source tables, derived from a dataset when it is ingested.

They are part of every snapshot (`data.ingest.write_snapshot` writes them), so they live in `data`;
`features` reads their names and timestamp field from here (features → data, never back).

History features are point-in-time safe: the row stamped ``t`` summarises only ratings made
strictly before ``t``, so joining an interaction at ``t`` never sees its own rating. A last row one
second after the user's final rating carries the complete history for the online store.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metarec.data.schema import Dataset

RECENT_RATINGS_KEPT = 20
LIKED_RATING = 5  # an implicit positive event on the rating scale of the recent-ratings view
TIMESTAMP_FIELD = "event_timestamp"


def user_profile_table(dataset: Dataset) -> pd.DataFrame:
    """User attributes, one row per user and validity start."""
    table = dataset.users.rename(columns={"valid_from": TIMESTAMP_FIELD})
    return table.sort_values(["user_id", TIMESTAMP_FIELD]).reset_index(drop=True)


def item_profile_table(dataset: Dataset) -> pd.DataFrame:
    """Item attributes, one row per item and validity start."""
    table = dataset.items.rename(columns={"valid_from": TIMESTAMP_FIELD})
    return table.sort_values(["item_id", TIMESTAMP_FIELD]).reset_index(drop=True)


def _history_points(interactions: pd.DataFrame) -> pd.DataFrame:
    """Per (user, distinct timestamp): how many ratings and their sums, sorted by time."""
    grouped = (
        interactions.assign(rating_sq=interactions["rating"].astype("float64") ** 2)
        .groupby(["user_id", TIMESTAMP_FIELD], sort=True)
        .agg(n=("rating", "size"), total=("rating", "sum"), total_sq=("rating_sq", "sum"))
        .reset_index()
    )
    last = grouped.groupby("user_id", sort=False).tail(1).copy()
    last[TIMESTAMP_FIELD] = last[TIMESTAMP_FIELD] + pd.Timedelta(seconds=1)
    last[["n", "total", "total_sq"]] = 0
    points = pd.concat([grouped, last]).sort_values(["user_id", TIMESTAMP_FIELD], kind="stable")
    by_user = points.groupby("user_id", sort=False)
    for column in ("n", "total", "total_sq"):
        # Prior sums: cumulative sum up to and excluding this point.
        points[f"prior_{column}"] = by_user[column].cumsum() - points[column]
    return points.reset_index(drop=True)


def user_history_table(dataset: Dataset) -> pd.DataFrame:
    """Per-user rating statistics as of each timestamp (ratings strictly before it)."""
    points = _history_points(dataset.interactions)
    count = points["prior_n"].astype("int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = points["prior_total"] / count
        variance = points["prior_total_sq"] / count - mean**2
    return pd.DataFrame(
        {
            "user_id": points["user_id"].astype(dataset.interactions["user_id"].dtype),
            TIMESTAMP_FIELD: points[TIMESTAMP_FIELD],
            "rating_count": count,
            "rating_mean": mean.where(count > 0, 0.0).astype("float64"),
            "rating_std": np.sqrt(variance.clip(lower=0)).where(count > 0, 0.0).astype("float64"),
        }
    )


def liked_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    """Implicit events as the model reads them: positive events, first per user and item.

    Each gets the ranking scale's "liked" value (:data:`LIKED_RATING`) as its ``rating``.

    The trainer reads an event training set the same way
    (:func:`metarec.training.implicit.positive_interactions`), so a known user's recent items
    in the online store are the items the model counts as their interactions.
    """
    positives = interactions[interactions["label"].astype("int64") == 1]
    positives = positives.sort_values(["user_id", TIMESTAMP_FIELD, "item_id"], kind="stable")
    first = positives.drop_duplicates(["user_id", "item_id"], keep="first")
    return first.assign(rating=LIKED_RATING).reset_index(drop=True)


def user_recent_ratings_table(dataset: Dataset, *, keep: int = RECENT_RATINGS_KEPT) -> pd.DataFrame:
    """The ``keep`` most recent (item, rating) pairs strictly before each timestamp.

    For implicit events: the most recent liked items (:func:`liked_interactions`), each with
    the rating :data:`LIKED_RATING`.
    """
    interactions = dataset.interactions
    if "rating" not in interactions.columns:
        interactions = liked_interactions(interactions)
    events = interactions.sort_values(["user_id", TIMESTAMP_FIELD], kind="stable")
    points = _history_points(interactions)
    item_lists: list[list[int]] = []
    rating_lists: list[list[int]] = []
    event_groups = {
        user: (group["item_id"].to_numpy(), group["rating"].to_numpy())
        for user, group in events.groupby("user_id", sort=False)
    }
    for user, prior in zip(points["user_id"], points["prior_n"], strict=True):
        items, ratings = event_groups[user]
        start = max(0, int(prior) - keep)
        item_lists.append(items[start : int(prior)][::-1].tolist())
        rating_lists.append(ratings[start : int(prior)][::-1].tolist())
    return pd.DataFrame(
        {
            "user_id": points["user_id"].astype(interactions["user_id"].dtype),
            TIMESTAMP_FIELD: points[TIMESTAMP_FIELD],
            "recent_item_ids": item_lists,
            "recent_ratings": rating_lists,
        }
    )


def interaction_table(dataset: Dataset) -> pd.DataFrame:
    """Rating events keyed by ``interaction_id``: the training labels, served through Feast."""
    return dataset.interactions.loc[
        :, ["interaction_id", "user_id", "item_id", "rating", TIMESTAMP_FIELD]
    ]


def feature_tables(dataset: Dataset) -> dict[str, pd.DataFrame]:
    """Every table of a snapshot: the canonical ones and the Feast offline sources.

    Returns:
        Table name → frame: ``users``, ``items``, ``interactions``, ``user_profile``,
        ``item_profile``, ``user_recent_ratings`` (for implicit events: the recent liked
        items), and ``user_history``, ``interaction_label`` when the interactions carry ratings.
    """
    tables = {
        "users": dataset.users,
        "items": dataset.items,
        "interactions": dataset.interactions,
        "user_profile": user_profile_table(dataset),
        "item_profile": item_profile_table(dataset),
    }
    if "rating" not in dataset.interactions.columns:  # implicit events (labels: their own view)
        return {**tables, "user_recent_ratings": user_recent_ratings_table(dataset)}
    return {
        **tables,
        "user_history": user_history_table(dataset),
        "user_recent_ratings": user_recent_ratings_table(dataset),
        "interaction_label": interaction_table(dataset),
    }

"""The canonical MetaRec dataset: users, items and interactions, with their known value sets.

Every source (MovieLens-100K, MovieLens-1M, synthetic) is converted into this one schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
GENRE_SEPARATOR = "|"

ML100K_OCCUPATIONS: tuple[str, ...] = (
    "administrator",
    "artist",
    "doctor",
    "educator",
    "engineer",
    "entertainment",
    "executive",
    "healthcare",
    "homemaker",
    "lawyer",
    "librarian",
    "marketing",
    "none",
    "other",
    "programmer",
    "retired",
    "salesman",
    "scientist",
    "student",
    "technician",
    "writer",
)
# MovieLens-1M stores occupations as codes; the code is the index into this tuple.
ML1M_OCCUPATIONS: tuple[str, ...] = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)
OCCUPATIONS: tuple[str, ...] = tuple(dict.fromkeys(ML100K_OCCUPATIONS + ML1M_OCCUPATIONS))
GENDERS: tuple[str, ...] = ("M", "F")

# MovieLens-1M age codes; MovieLens-100K exact ages are mapped into the same buckets.
AGE_BUCKETS: tuple[tuple[int, str], ...] = (
    (0, "<18"),
    (18, "18-24"),
    (25, "25-34"),
    (35, "35-44"),
    (45, "45-49"),
    (50, "50-55"),
    (56, "56+"),
)
RATING_MIN = 1
RATING_MAX = 5

# Profiles that do not change carry this validity start, so every interaction sees them.
STATIC_PROFILE_TIMESTAMP = pd.Timestamp(datetime(1970, 1, 1, tzinfo=UTC))

USER_COLUMNS = ("user_id", "age", "age_bucket", "gender", "occupation", "zip_prefix", "valid_from")
ITEM_COLUMNS = ("item_id", "title", "release_year", "genres", "valid_from")
INTERACTION_COLUMNS = ("interaction_id", "user_id", "item_id", "rating", "event_timestamp")


def age_bucket(age: int) -> str:
    """Return the MovieLens-1M age bucket label of an age in years."""
    label = AGE_BUCKETS[0][1]
    for lower, name in AGE_BUCKETS:
        if age >= lower:
            label = name
    return label


def zip_prefix(zip_code: str) -> str:
    """Return the first three characters of a zip code, upper-cased (``"85711"`` → ``"857"``)."""
    return str(zip_code).strip()[:3].upper()


@dataclass(frozen=True)
class Dataset:
    """One ingested dataset in the canonical schema.

    Attributes:
        users: One row per user and profile version (``valid_from``).
        items: One row per item and profile version (``valid_from``).
        interactions: One row per rating event.
        source: Where it came from (``ml-100k``, ``ml-1m``, ``synthetic``).
    """

    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame
    source: str

    def summary(self) -> dict[str, int]:
        """Row counts of each table."""
        return {
            "users": int(self.users["user_id"].nunique()),
            "items": int(self.items["item_id"].nunique()),
            "interactions": len(self.interactions),
        }


def normalise_frames(
    users: pd.DataFrame, items: pd.DataFrame, interactions: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Cast the three tables to the canonical column order and dtypes.

    Args:
        users: Users with at least :data:`USER_COLUMNS`.
        items: Items with at least :data:`ITEM_COLUMNS`.
        interactions: Interactions with at least :data:`INTERACTION_COLUMNS` (an
            ``interaction_id`` is assigned in time order when missing).

    Returns:
        The three tables, with canonical columns only.
    """
    users = users.loc[:, list(USER_COLUMNS)].astype(
        {
            "user_id": "int64",
            "age": "int64",
            "age_bucket": "string",
            "gender": "string",
            "occupation": "string",
            "zip_prefix": "string",
        }
    )
    users["valid_from"] = pd.to_datetime(users["valid_from"], utc=True)
    items = items.loc[:, list(ITEM_COLUMNS)].astype(
        {"item_id": "int64", "title": "string", "release_year": "Int64", "genres": "string"}
    )
    items["valid_from"] = pd.to_datetime(items["valid_from"], utc=True)
    interactions = interactions.copy()
    interactions["event_timestamp"] = pd.to_datetime(interactions["event_timestamp"], utc=True)
    if "interaction_id" not in interactions.columns:
        # A stable key per rating event, in time order: Feast joins labels by it.
        interactions = interactions.sort_values(
            ["event_timestamp", "user_id", "item_id"], kind="stable"
        )
        interactions["interaction_id"] = range(1, len(interactions) + 1)
    interactions = interactions.loc[:, list(INTERACTION_COLUMNS)].astype(
        {"interaction_id": "int64", "user_id": "int64", "item_id": "int64", "rating": "int64"}
    )
    return (
        users.reset_index(drop=True),
        items.reset_index(drop=True),
        interactions.reset_index(drop=True),
    )

"""The canonical MetaRec dataset: users, items and interactions, with their known value sets.

Every source (a team's tables, MovieLens-100K, MovieLens-1M, synthetic) ends in the generic
validator/normaliser (:mod:`metarec.data.table_normalise`); MovieLens and the synthetic generator
through their built-in schema (:mod:`metarec.data.movielens_schema`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

# The canonical MovieLens columns and their normaliser come from the generic table path.
from metarec.data.movielens_schema import INTERACTION_COLUMNS as INTERACTION_COLUMNS
from metarec.data.movielens_schema import ITEM_COLUMNS as ITEM_COLUMNS
from metarec.data.movielens_schema import USER_COLUMNS as USER_COLUMNS
from metarec.data.movielens_schema import normalise_frames as normalise_frames
from metarec.data.table_schema import STATIC_PROFILE_TIMESTAMP as STATIC_PROFILE_TIMESTAMP

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
        interactions: One row per rating or event.
        source: Where it came from (``ml-100k``, ``ml-1m``, ``synthetic``, ``table``).
        metadata: Strings recorded in the snapshot's manifest (a table source's declared schema).
    """

    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame
    source: str
    metadata: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """Row counts of each table."""
        return {
            "users": int(self.users["user_id"].nunique()),
            "items": int(self.items["item_id"].nunique()),
            "interactions": len(self.interactions),
        }

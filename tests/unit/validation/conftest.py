"""A small training set in the meta_training schema, built in memory, and its profile."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from metarec.validation.profile import ReferenceProfile, compute_statistics
from metarec.validation.suite import load_suite

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def make_training_set(n_users: int = 30, n_items: int = 12, seed: int = 0) -> pd.DataFrame:
    """Every user rates every item once: clean, typed exactly like a Feast training set."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, n_users + 1), n_items)
    items = np.tile(np.arange(1, n_items + 1), n_users)
    n = len(users)
    ratings = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.06, 0.11, 0.27, 0.34, 0.22])
    timestamps = pd.Timestamp("1998-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 10_000_000, size=n), unit="s"
    )
    frame = pd.DataFrame(
        {
            "interaction_id": np.arange(1, n + 1, dtype="int64"),
            "user_id": users.astype("int64"),
            "item_id": items.astype("int64"),
            "event_timestamp": timestamps.astype("datetime64[ns, UTC]"),
            "rating": ratings.astype("int64"),
            "age": (20 + users % 40).astype("int64"),
            "age_bucket": pd.array(np.where(users % 40 < 5, "18-24", "25-34"), dtype="string"),
            "gender": pd.array(np.where(users % 2 == 0, "M", "F"), dtype="string"),
            "occupation": pd.array(np.where(users % 3 == 0, "writer", "student"), dtype="string"),
            "zip_prefix": pd.array(["857"] * n, dtype="string"),
            "release_year": pd.array(1990 + items % 8, dtype="Int64"),
            "genres": pd.array(np.where(items % 2 == 0, "Comedy|Drama", "Sci-Fi"), dtype="string"),
            "rating_count": np.zeros(n, dtype="int64"),
            "rating_mean": np.zeros(n, dtype="float64"),
            "rating_std": np.zeros(n, dtype="float64"),
        }
    )
    frame.loc[0, "release_year"] = pd.NA  # a few items have no year in MovieLens
    return frame


def make_profile(
    frame: pd.DataFrame, *, version: int = 1, suite=None, features=()
) -> ReferenceProfile:
    """A reference profile of ``frame`` (``suite``: default meta_training; declared features)."""
    suite = suite or load_suite("meta_training")
    return ReferenceProfile(
        version=version,
        feature_service="meta_training",
        feature_service_version="abc",
        suite_name=suite.name,
        suite_version=suite.version,
        training_set="memory",
        dataset_fingerprint="sha256:x",
        snapshot_id="snap",
        created_at=NOW,
        statistics=compute_statistics(
            frame,
            quantiles=suite.drift.ratings_per_user_quantiles,
            features=features,
            reference_checks=suite.reference_checks,
        ),
    )


@pytest.fixture
def clean() -> pd.DataFrame:
    return make_training_set()


@pytest.fixture
def suite():
    return load_suite("meta_training")


def make_sample(seed: int = 0, *, n_users: int = 60, n_items: int = 40) -> pd.DataFrame:
    """One clean sample of a fixed population: ``seed`` varies the sample, never the population.

    The population (seeded apart) fixes each user's attributes and bias and each item's
    attributes, quality and popularity; a sample draws which items each user rates (by
    popularity), the ratings (item quality + user bias + noise) and the timestamps. Two seeds
    are two clean training sets of the same users and items, as the next week's would be.
    """
    population = np.random.default_rng(1234)
    quality = population.uniform(1.5, 4.5, size=n_items + 1)
    popularity = 1.0 / (population.permutation(n_items) + 3.0)
    bias = population.normal(0, 0.3, size=n_users + 1)
    rng = np.random.default_rng(seed)
    rows = [
        (user, int(item))
        for user in range(1, n_users + 1)
        for item in 1
        + rng.choice(
            n_items, size=rng.integers(10, 21), replace=False, p=popularity / popularity.sum()
        )
    ]
    users = np.array([user for user, _ in rows])
    items = np.array([item for _, item in rows])
    n = len(rows)
    noise = rng.normal(0, 0.5, size=n)
    ratings = np.clip(np.rint(quality[items] + bias[users] + noise), 1, 5).astype("int64")
    frame = make_training_set(n_users=1, n_items=1).iloc[[0] * n].reset_index(drop=True)
    frame = frame.assign(
        interaction_id=np.arange(1, n + 1, dtype="int64"),
        user_id=users.astype("int64"),
        item_id=items.astype("int64"),
        event_timestamp=(
            pd.Timestamp("1998-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 10_000_000, size=n), unit="s")
        ).astype("datetime64[ns, UTC]"),
        rating=ratings,
        age=(18 + (users * 7) % 50).astype("int64"),
        gender=pd.array(np.where(users % 2 == 0, "M", "F"), dtype="string"),
        occupation=pd.array(
            np.array(["writer", "student", "artist", "doctor", "other"])[users % 5], dtype="string"
        ),
        release_year=pd.array(1950 + (items * 3) % 50, dtype="Int64"),
        genres=pd.array(
            np.array(["Comedy", "Drama", "Comedy|Drama", "Sci-Fi", "Action|Thriller"])[items % 5],
            dtype="string",
        ),
    )
    return _with_history(frame)


def _with_history(frame: pd.DataFrame) -> pd.DataFrame:
    """Each row's user history before it: count, mean and std of earlier ratings (as Feast's)."""
    frame = frame.sort_values(["user_id", "event_timestamp"], kind="stable")
    earlier = frame.groupby("user_id")["rating"]
    count = earlier.cumcount()
    total = earlier.cumsum() - frame["rating"]
    squares = (frame["rating"] ** 2).groupby(frame["user_id"]).cumsum() - frame["rating"] ** 2
    mean = (total / count.where(count > 0)).fillna(0.0)
    variance = (squares / count.where(count > 0)).fillna(0.0) - mean**2
    return (
        frame.assign(
            rating_count=count.astype("int64"),
            rating_mean=mean.astype("float64"),
            rating_std=np.sqrt(variance.clip(lower=0)).astype("float64"),
        )
        .sort_values("interaction_id", kind="stable")
        .reset_index(drop=True)
    )

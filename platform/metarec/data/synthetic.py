"""A seeded synthetic dataset in the MovieLens schema, with a planted per-user structure.

Each user has a latent taste vector: a part shared with users of the same occupation and age
bucket, and a large personal part. Each item's latent vector comes from its genres plus noise.
A rating is ``round(3 + user bias + item bias + taste · item + noise)`` clipped to 1..5, so a
model that adapts to a user's few ratings can recover the personal part; a global model cannot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from metarec.data.schema import (
    AGE_BUCKETS,
    GENRE_SEPARATOR,
    GENRES,
    ML100K_OCCUPATIONS,
    RATING_MAX,
    RATING_MIN,
    STATIC_PROFILE_TIMESTAMP,
    Dataset,
    age_bucket,
    normalise_frames,
)


class SyntheticSpec(BaseModel):
    """Size and seed of a synthetic dataset."""

    model_config = ConfigDict(extra="forbid")

    n_users: int = Field(default=300, ge=2)
    n_items: int = Field(default=400, ge=2)
    min_ratings_per_user: int = Field(default=20, ge=1)
    max_ratings_per_user: int = Field(default=80, ge=1)
    latent_dim: int = Field(default=8, ge=1)
    noise: float = Field(default=0.35, ge=0.0)
    seed: int = 0

    @model_validator(mode="after")
    def _check_counts(self) -> SyntheticSpec:
        if self.min_ratings_per_user > self.max_ratings_per_user:
            raise ValueError("min_ratings_per_user must be <= max_ratings_per_user")
        if self.max_ratings_per_user > self.n_items:
            raise ValueError("max_ratings_per_user must be <= n_items")
        return self


def generate_synthetic(spec: SyntheticSpec | None = None) -> Dataset:
    """Generate a synthetic dataset.

    Args:
        spec: Sizes and seed; the defaults give 300 users, 400 items, about 15,000 ratings.

    Returns:
        The dataset in MetaRec's canonical schema; the same spec gives the same data.
    """
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    # One generator, drawn from in this order: users, items, then the ratings.
    users = _users(rng, spec)
    items, item_latent, item_bias = _items(rng, spec)
    interactions = _interactions(rng, spec, users, item_latent=item_latent, item_bias=item_bias)
    users, items, interactions = normalise_frames(users, items, interactions)
    return Dataset(users=users, items=items, interactions=interactions, source="synthetic")


def _users(rng: np.random.Generator, spec: SyntheticSpec) -> pd.DataFrame:
    """Random profiles: age, gender, occupation and zip prefix."""
    ages = rng.integers(15, 70, size=spec.n_users)
    genders = rng.choice(["M", "F"], size=spec.n_users, p=[0.7, 0.3])
    occupations = rng.choice(list(ML100K_OCCUPATIONS), size=spec.n_users)
    zips = rng.integers(10000, 99999, size=spec.n_users).astype(str)
    users = pd.DataFrame(
        {
            "user_id": np.arange(1, spec.n_users + 1),
            "age": ages,
            "gender": genders,
            "occupation": occupations,
            "zip_prefix": [z[:3] for z in zips],
            "valid_from": STATIC_PROFILE_TIMESTAMP,
        }
    )
    users["age_bucket"] = users["age"].map(age_bucket)
    return users


def _items(
    rng: np.random.Generator, spec: SyntheticSpec
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Items with one to three genres; their latent vectors (genres plus noise) and biases."""
    dim = spec.latent_dim
    real_genres = GENRES[1:]
    genre_vectors = rng.normal(0, 0.6, size=(len(real_genres), dim))
    item_genres = []
    item_latent = np.empty((spec.n_items, dim))
    for index in range(spec.n_items):
        count = int(rng.integers(1, 4))
        chosen = sorted(rng.choice(len(real_genres), size=count, replace=False))
        item_genres.append(GENRE_SEPARATOR.join(real_genres[g] for g in chosen))
        item_latent[index] = genre_vectors[chosen].mean(axis=0) + rng.normal(0, 0.3, dim)
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, spec.n_items + 1),
            "title": [
                f"Synthetic Movie {i} ({y})"
                for i, y in enumerate(rng.integers(1930, 1999, size=spec.n_items), start=1)
            ],
            "genres": item_genres,
            "valid_from": STATIC_PROFILE_TIMESTAMP,
        }
    )
    items["release_year"] = items["title"].str.extract(r"\((\d{4})\)$")[0].astype("int64")
    return items, item_latent, rng.normal(0, 0.4, spec.n_items)


def _interactions(
    rng: np.random.Generator,
    spec: SyntheticSpec,
    users: pd.DataFrame,
    *,
    item_latent: np.ndarray,
    item_bias: np.ndarray,
) -> pd.DataFrame:
    """Each user's ratings: a taste shared with their group plus a personal part, over time."""
    dim = spec.latent_dim
    group_vectors = {
        key: rng.normal(0, 0.5, dim)
        for key in [(o, b) for o in ML100K_OCCUPATIONS for _, b in AGE_BUCKETS]
    }
    start = pd.Timestamp("1997-09-20", tz="UTC").value // 10**9
    end = pd.Timestamp("1998-04-22", tz="UTC").value // 10**9
    rows = []
    for user in users.itertuples(index=False):
        shared = group_vectors[(user.occupation, user.age_bucket)]
        taste = shared + rng.normal(0, 1.0, dim)
        bias = rng.normal(0, 0.5)
        count = int(rng.integers(spec.min_ratings_per_user, spec.max_ratings_per_user + 1))
        rated = rng.choice(spec.n_items, size=count, replace=False)
        scores = 3.2 + bias + item_bias[rated] + item_latent[rated] @ taste
        scores += rng.normal(0, spec.noise, count)
        ratings = np.clip(np.rint(scores), RATING_MIN, RATING_MAX).astype(int)
        first = int(rng.integers(start, end - 86400))
        times = np.sort(rng.integers(first, end, size=count))
        for item_index, rating, ts in zip(rated, ratings, times, strict=True):
            rows.append((int(user.user_id), int(item_index) + 1, int(rating), int(ts)))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    interactions["event_timestamp"] = pd.to_datetime(interactions["timestamp"], unit="s", utc=True)
    return interactions

"""A seeded non-MovieLens catalogue with planted structure, as the tables a team would have.

Users belong to one of ``n_segments`` hidden segments; items to one of ``n_clusters`` hidden
clusters. Each segment prefers ``clusters_per_segment`` clusters (segment ``s`` prefers clusters
``s·p … s·p+p-1`` modulo ``n_clusters``), and ``preferred_share`` of its events fall on them
(against ``p / n_clusters`` by chance). The attribute columns carry the hidden groups partly:

* ``country``: the segment's own country with probability ``country_purity``, else any country;
* ``age``: a segment-dependent mean (``age_shift`` years apart) under a wide spread: a weak signal;
* ``category``: the cluster's category with probability ``category_purity``, else any;
* ``price``: log-normal around a per-cluster level; ``tags``: one to three of the cluster's tags,
  sometimes a shared tag;
* ``text_embedding``: a ``vector_dim`` text-like vector, the cluster's centroid plus noise.

Events are ``view``, ``click`` or ``purchase`` (weights 1, 2, 5); clicks and purchases, the
positives, are likelier on a preferred cluster. Item popularity is Zipf-like (``zipf_exponent``)
and user activity log-normal (``activity_sigma``), so a few items and users dominate. Timestamps
spread over ``days`` days from ``start``. The ``rating`` variant keeps one event per user and item
and turns it into a 1-5 rating, higher on preferred clusters.

:func:`generate_catalogue` returns the frames; :mod:`metarec.data.catalogue_files` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

COUNTRIES = ("FR", "DE", "US", "JP", "BR", "IN", "GB", "ES", "IT", "CA", "MX", "KR")
CATEGORIES = ("books", "garden", "kitchen", "games", "sports", "music", "beauty", "toys")
EVENT_TYPES = ("view", "click", "purchase")
EVENT_WEIGHTS = (1.0, 2.0, 5.0)
POSITIVE_EVENTS = ("click", "purchase")
# Event-type probabilities (view, click, purchase) on a preferred cluster and elsewhere.
IN_TASTE_EVENTS = (0.45, 0.35, 0.20)
OFF_TASTE_EVENTS = (0.80, 0.15, 0.05)
SHARED_TAGS = ("sale", "new", "eco")


class CatalogueSpec(BaseModel):
    """Sizes, planted-structure strengths and seed of a generated catalogue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_users: int = Field(default=300, ge=2)
    n_items: int = Field(default=200, ge=2)
    n_segments: int = Field(default=4, ge=1, le=len(COUNTRIES))
    n_clusters: int = Field(default=8, ge=1)
    clusters_per_segment: int = Field(default=2, ge=1)
    preferred_share: float = Field(default=0.8, gt=0.0, lt=1.0)
    country_purity: float = Field(default=0.8, ge=0.0, le=1.0)
    age_shift: float = Field(default=4.0, ge=0.0)
    category_purity: float = Field(default=0.7, ge=0.0, le=1.0)
    vector_dim: int = Field(default=16, ge=2)
    vector_noise: float = Field(default=0.5, ge=0.0)
    zipf_exponent: float = Field(default=1.0, ge=0.0)
    mean_events_per_user: float = Field(default=30.0, ge=1.0)
    activity_sigma: float = Field(default=0.8, ge=0.0)
    min_events_per_user: int = Field(default=5, ge=1)
    days: int = Field(default=180, ge=1)
    start: str = "2024-01-01T00:00:00Z"
    label: Literal["event", "rating"] = "event"
    ids: Literal["text", "int"] = "text"
    seed: int = 0

    @model_validator(mode="after")
    def _check_groups(self) -> CatalogueSpec:
        if self.clusters_per_segment > self.n_clusters:
            raise ValueError("clusters_per_segment must be <= n_clusters")
        return self

    def preferences(self) -> np.ndarray:
        """``(n_segments, n_clusters)`` booleans: which clusters each segment prefers."""
        p = self.clusters_per_segment
        prefers = np.zeros((self.n_segments, self.n_clusters), dtype=bool)
        for segment in range(self.n_segments):
            prefers[segment, [(segment * p + j) % self.n_clusters for j in range(p)]] = True
        return prefers


PRESETS: dict[str, dict[str, int]] = {
    "small": {"n_users": 300, "n_items": 200},  # tests: ~9,000 events, well under a second
    "large": {"n_users": 6000, "n_items": 3000},  # benchmarks: ~180,000 events
}


@dataclass(frozen=True)
class Catalogue:
    """A generated catalogue: the tables a team would have, and the hidden truth."""

    interactions: pd.DataFrame  # customer_id, sku, event_time (unix s), event, weight | rating
    users: pd.DataFrame  # customer_id, country, age
    items: pd.DataFrame  # sku, category, price, tags ("a|b"), text_embedding (list of floats)
    truth: pd.DataFrame  # entity (user | item | preference), id, segment, cluster


def generate_catalogue(spec: CatalogueSpec | None = None) -> Catalogue:
    """Generate a catalogue with planted segments and clusters.

    Args:
        spec: Sizes, structure strengths and seed; the defaults give 300 users, 200 items and
            about 9,000 events. The same spec always gives the same tables.

    Returns:
        The interactions, user and item tables, and the truth (segment per user, cluster per
        item, preferred clusters per segment).
    """
    spec = spec or CatalogueSpec()
    rng = np.random.default_rng(spec.seed)
    segments = rng.integers(spec.n_segments, size=spec.n_users)
    clusters = rng.integers(spec.n_clusters, size=spec.n_items)
    users = _users(spec, rng, segments)
    items = _items(spec, rng, clusters)
    user_index, item_index = _draw_events(spec, rng, segments, clusters)
    in_taste = spec.preferences()[segments[user_index], clusters[item_index]]
    interactions = _label_events(spec, rng, user_index, item_index, in_taste)
    interactions = interactions.sort_values(["event_time", "customer_id"], kind="stable")
    interactions["customer_id"] = users["customer_id"].to_numpy()[interactions["customer_id"]]
    interactions["sku"] = items["sku"].to_numpy()[interactions["sku"]]
    truth = _truth(spec, users["customer_id"], items["sku"], segments, clusters)
    return Catalogue(interactions.reset_index(drop=True), users, items, truth)


def _ids(prefix: str, count: int, *, style: str) -> np.ndarray:
    if style == "int":
        return np.arange(1, count + 1, dtype=np.int64)
    width = len(str(count))
    return np.array([f"{prefix}{n:0{width}d}" for n in range(1, count + 1)], dtype=object)


def _users(spec: CatalogueSpec, rng: np.random.Generator, segments: np.ndarray) -> pd.DataFrame:
    """Users: ``country`` tied to the segment (``country_purity``), ``age`` weakly."""
    n_countries = min(len(COUNTRIES), max(spec.n_segments + 2, 6))
    own = rng.random(spec.n_users) < spec.country_purity
    country = np.where(own, segments, rng.integers(n_countries, size=spec.n_users))
    mean_age = 38.0 + spec.age_shift * (segments - (spec.n_segments - 1) / 2)
    age = np.clip(np.rint(rng.normal(mean_age, 12.0)), 18, 80).astype(np.int64)
    return pd.DataFrame(
        {
            "customer_id": _ids("c", spec.n_users, style=spec.ids),
            "country": np.asarray(COUNTRIES)[country],
            "age": age,
        }
    )


def _items(spec: CatalogueSpec, rng: np.random.Generator, clusters: np.ndarray) -> pd.DataFrame:
    """Items: category, price, tags and a text-like vector, all revealing the cluster partly."""
    n = spec.n_items
    own = rng.random(n) < spec.category_purity
    category = np.where(own, clusters % len(CATEGORIES), rng.integers(len(CATEGORIES), size=n))
    price_level = rng.uniform(np.log(5.0), np.log(200.0), size=spec.n_clusters)
    price = np.round(np.exp(rng.normal(price_level[clusters], 0.3)), 2)
    centroids = rng.normal(size=(spec.n_clusters, spec.vector_dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    noise = rng.normal(
        scale=spec.vector_noise / np.sqrt(spec.vector_dim), size=(n, spec.vector_dim)
    )
    vectors = np.round(centroids[clusters] + noise, 4)
    return pd.DataFrame(
        {
            "sku": _ids("sku-", n, style=spec.ids),
            "category": np.asarray(CATEGORIES)[category],
            "price": price,
            "tags": _tags(rng, clusters),
            "text_embedding": list(vectors),
        }
    )


def _tags(rng: np.random.Generator, clusters: np.ndarray) -> list[str]:
    """One to three of the cluster's three tags (``k{cluster}t{j}``), sometimes a shared tag."""
    chosen = rng.random((len(clusters), 3)) < 0.6
    chosen[np.arange(len(clusters)), rng.integers(3, size=len(clusters))] = True
    shared = rng.integers(len(SHARED_TAGS), size=len(clusters))
    with_shared = rng.random(len(clusters)) < 0.3
    tags = []
    for row, cluster in enumerate(clusters):
        own = [f"k{cluster}t{j}" for j in range(3) if chosen[row, j]]
        tags.append("|".join(own + ([SHARED_TAGS[shared[row]]] if with_shared[row] else [])))
    return tags


def _activity(spec: CatalogueSpec, rng: np.random.Generator) -> np.ndarray:
    """Events per user: log-normal around ``mean_events_per_user`` (a heavy tail)."""
    mu = np.log(spec.mean_events_per_user) - spec.activity_sigma**2 / 2
    counts = np.rint(rng.lognormal(mu, spec.activity_sigma, size=spec.n_users))
    ceiling = 50 * spec.mean_events_per_user
    return np.clip(counts, spec.min_events_per_user, ceiling).astype(np.int64)


def _draw_events(
    spec: CatalogueSpec, rng: np.random.Generator, segments: np.ndarray, clusters: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """User and item index per event: Zipf popularity, tilted to the segment's clusters."""
    popularity = 1.0 / np.arange(1, spec.n_items + 1) ** spec.zipf_exponent
    popularity = popularity[rng.permutation(spec.n_items)]
    user_index = np.repeat(np.arange(spec.n_users), _activity(spec, rng))
    item_index = np.empty_like(user_index)
    preferences = spec.preferences()
    for segment in range(spec.n_segments):
        preferred = preferences[segment, clusters]
        odds = _preference_odds(popularity, preferred, share=spec.preferred_share)
        weights = popularity * np.where(preferred, odds, 1.0)
        rows = np.flatnonzero(segments[user_index] == segment)
        item_index[rows] = rng.choice(spec.n_items, size=len(rows), p=weights / weights.sum())
    return user_index, item_index


def _preference_odds(popularity: np.ndarray, preferred: np.ndarray, *, share: float) -> float:
    """The boost on preferred items that puts ``share`` of the segment's events on them."""
    inside, outside = popularity[preferred].sum(), popularity[~preferred].sum()
    if inside == 0 or outside == 0:
        return 1.0
    return share / (1 - share) * outside / inside


def _label_events(
    spec: CatalogueSpec,
    rng: np.random.Generator,
    user_index: np.ndarray,
    item_index: np.ndarray,
    in_taste: np.ndarray,
) -> pd.DataFrame:
    """Timestamps and an event type and weight, or (rating variant) a 1-5 rating per event."""
    start = int(pd.Timestamp(spec.start).timestamp())
    period = spec.days * 86_400
    joined = rng.uniform(0, 0.7 * period, size=spec.n_users)[user_index]
    seconds = start + (joined + rng.uniform(0, 1, len(user_index)) * (period - joined))
    frame = pd.DataFrame(
        {"customer_id": user_index, "sku": item_index, "event_time": seconds.astype(np.int64)}
    )
    if spec.label == "rating":
        rating = rng.normal(2.6 + 1.5 * in_taste, 0.8)
        frame["rating"] = np.clip(np.rint(rating), 1, 5).astype(np.int64)
        return frame.drop_duplicates(["customer_id", "sku"], keep="first")
    draw = rng.random(len(user_index))
    cumulative = np.where(
        in_taste[:, None], np.cumsum(IN_TASTE_EVENTS), np.cumsum(OFF_TASTE_EVENTS)
    )
    kind = np.minimum((draw[:, None] >= cumulative).sum(axis=1), len(EVENT_TYPES) - 1)
    frame["event"] = np.asarray(EVENT_TYPES)[kind]
    frame["weight"] = np.asarray(EVENT_WEIGHTS)[kind]
    return frame


def _truth(
    spec: CatalogueSpec,
    user_ids: pd.Series,
    item_ids: pd.Series,
    segments: np.ndarray,
    clusters: np.ndarray,
) -> pd.DataFrame:
    """The hidden groups: segment per user, cluster per item, preferred clusters per segment."""
    pairs = np.argwhere(spec.preferences())
    parts = [
        pd.DataFrame({"entity": "user", "id": user_ids.astype(str), "segment": segments}),
        pd.DataFrame({"entity": "item", "id": item_ids.astype(str), "cluster": clusters}),
        pd.DataFrame(
            {
                "entity": "preference",
                "id": pairs[:, 0].astype(str),
                "segment": pairs[:, 0],
                "cluster": pairs[:, 1],
            }
        ),
    ]
    truth = pd.concat(parts, ignore_index=True)
    return truth.astype({"segment": "Int64", "cluster": "Int64"})

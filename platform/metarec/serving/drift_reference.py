"""The training reference that a served version's live traffic is compared with.

Built from the version's own training set: the one whose content fingerprint is the card's
``dataset_fingerprint``, found among the training sets of the MetaRec home by their manifests
(:func:`load_drift_reference`). The validation gate's reference profile is not enough: it keeps
the ratings-per-user quantiles of the *first* accepted training set, but no item popularity and
no scores, and a later version may have been trained on another training set.

From the training set: the support size each training user would bring (their ratings, capped
at ``serving.max_support_size``) with quantile bin edges; each seen item's popularity decile by
interaction mass (decile 1: the head items that make the first 10 % of interactions; a last bin
for items the training set never saw); the cold-start share (users without a rating: 0 for a
training set of interactions); and a small seeded sample of users' support sets, which the
engine scores with the served model when it warms up to fix the predicted-score bins.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metarec.errors import FeatureStoreError
from metarec.features.training_set import read_manifest
from metarec.training.implicit import is_event_training_set, positive_interactions

_LOG = logging.getLogger(__name__)
DECILES = 10
SAMPLE_USERS = 64  # reference users whose support sets calibrate the predicted-score bins


class ReferenceUser(BaseModel):
    """A training user and their support set, to score with the served model."""

    model_config = ConfigDict(frozen=True)

    user_id: int | str
    support: list[tuple[int | str, float | None]] = Field(
        description="(item, rating) pairs, newest first (rating None: an event)."
    )


class DriftReference(BaseModel):
    """Fixed bins and reference shares of one version's training data (JSON-serialisable)."""

    model_config = ConfigDict(frozen=True)

    source: str = Field(description="Where it came from (the training set and fingerprint).")
    support_size_edges: list[float] = Field(
        description="Bin edges of support sizes: bin j holds edges[j-1] <= size < edges[j]; "
        "the first edge is 1, so bin 0 is the cold start (size 0)."
    )
    support_size_shares: list[float]
    cold_start_share: float | None = None
    item_ids: list[int | str] = Field(description="Items seen in training.")
    item_bins: list[int] = Field(description="Each seen item's popularity decile (0: head).")
    item_popularity_shares: list[float] = Field(
        description="Share of training interactions per decile, then 0.0 for unseen items."
    )
    samples: list[ReferenceUser] = Field(
        default_factory=list,
        description="A seeded sample of training users and their newest ratings.",
    )

    def row_bins(self, item_ids: np.ndarray) -> np.ndarray:
        """The popularity bin of each item of a catalogue (the unseen bin for new items).

        One vectorised hash lookup (a catalogue of a million items: tens of ms), done once per
        item matrix the service reads.
        """
        unseen = len(self.item_popularity_shares) - 1
        at = pd.Index(self.item_ids).get_indexer(pd.Index(item_ids, dtype=object))
        known = np.append(np.asarray(self.item_bins, dtype=np.int64), unseen)
        return known[np.where(at < 0, len(self.item_bins), at)]


def popularity_deciles(counts: np.ndarray) -> np.ndarray:
    """Each item's decile of interaction mass, head first (``counts`` sorted descending)."""
    total = float(counts.sum())
    before = (np.cumsum(counts) - counts) / total  # share of interactions of more popular items
    return np.minimum((before * DECILES).astype(np.int64), DECILES - 1)


def support_size_bins(sizes: np.ndarray) -> tuple[list[float], list[float]]:
    """Bin edges (1, then the deciles of positive sizes) and the reference shares."""
    positive = sizes[sizes > 0]
    quantiles = np.quantile(positive, np.linspace(0.1, 0.9, 9)) if len(positive) else []
    edges = np.unique(np.concatenate([[1.0], [q for q in quantiles if q > 1]]))
    counts = np.bincount(np.searchsorted(edges, sizes, side="right"), minlength=len(edges) + 1)
    return edges.tolist(), (counts / max(counts.sum(), 1)).tolist()


def build_reference(
    frame: pd.DataFrame,
    *,
    max_support_size: int,
    source: str,
    sample_users: int = SAMPLE_USERS,
    seed: int = 0,
) -> DriftReference:
    """The drift reference of a training set.

    Args:
        frame: Training interactions: ``user_id``, ``item_id``; ``rating`` and
            ``event_timestamp`` when present.
        max_support_size: ``serving.max_support_size`` (a served support set is capped there).
        source: What to record as its source.
        sample_users: Users whose newest ratings become sample support sets.
        seed: Seed of the user sample.

    Returns:
        The reference.
    """
    per_user = frame.groupby("user_id", sort=False).size()
    edges, shares = support_size_bins(np.minimum(per_user.to_numpy(), max_support_size))
    popularity = frame["item_id"].value_counts(sort=True)
    deciles = popularity_deciles(popularity.to_numpy())
    mass = np.bincount(deciles, weights=popularity.to_numpy(), minlength=DECILES)
    return DriftReference(
        source=source,
        support_size_edges=edges,
        support_size_shares=shares,
        cold_start_share=0.0,  # every user of an interaction table has an interaction
        item_ids=[_native(i) for i in popularity.index],
        item_bins=deciles.tolist(),
        item_popularity_shares=[*(mass / mass.sum()).tolist(), 0.0],
        samples=_samples(frame, max_support_size, sample_users, seed),
    )


def _native(value: object) -> int | str:
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def _samples(frame: pd.DataFrame, limit: int, users: int, seed: int) -> list[ReferenceUser]:
    """A seeded sample of users with their newest ``limit`` (item, rating) pairs."""
    ids = frame["user_id"].unique()
    chosen = np.random.default_rng(seed).permutation(len(ids))[:users]
    order = "event_timestamp" if "event_timestamp" in frame.columns else "item_id"
    picked = frame[frame["user_id"].isin(set(ids[chosen].tolist()))]
    picked = picked.sort_values(order, ascending=False, kind="stable")
    samples = []
    for user, rows in picked.groupby("user_id", sort=True):
        rows = rows.head(limit)
        ratings = rows["rating"].tolist() if "rating" in rows.columns else [None] * len(rows)
        items = [_native(i) for i in rows["item_id"]]
        support = [
            (i, None if r is None else float(r)) for i, r in zip(items, ratings, strict=True)
        ]
        samples.append(ReferenceUser(user_id=_native(user), support=support))
    return samples


def find_training_set(folder: Path, fingerprint: str) -> Path | None:
    """The training set under ``folder`` whose manifest records ``fingerprint`` (None: none)."""
    for parquet in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        try:
            if read_manifest(parquet).fingerprint == fingerprint:
                return parquet
        except (FeatureStoreError, ValueError):  # no readable manifest: not a training set
            continue
    return None


def load_drift_reference(
    training_sets: Path, *, fingerprint: str, max_support_size: int
) -> DriftReference | None:
    """The reference of the training set with content ``fingerprint``, or None (logged).

    Args:
        training_sets: Where the home keeps its training sets (``settings.paths.training_sets``).
        fingerprint: The served card's ``dataset_fingerprint``.
        max_support_size: ``serving.max_support_size``.
    """
    found = find_training_set(training_sets, fingerprint)
    if found is None:
        _LOG.warning(
            "drift: no training set with fingerprint %s under %s; metarec_drift_psi is not "
            "exported for this version (copy its training set there to monitor drift)",
            fingerprint[:16],
            training_sets,
        )
        return None
    frame = pd.read_parquet(found)
    if is_event_training_set(frame):  # the positive interactions, as training reads them
        frame = positive_interactions(frame)
    return build_reference(
        frame,
        max_support_size=max_support_size,
        source=f"{found} (fingerprint {fingerprint[:16]})",
    )

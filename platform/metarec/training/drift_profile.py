"""The drift reference of a training set: what a served version's requests should look like.

A request adapts on a support set: a new user's few ratings (the request's ``support``), or a
known user's most recent ratings from the online store. So the reference is built from
support-sized samples of the training users' histories, not from whole histories: half the
users (seeded) as new users, their *first* ``k`` ratings by time, half as returning users,
their ``k`` *most recent*, ``k`` drawn from the training config's support range
(``train_support_min`` .. ``train_support_max``). First ratings lean to popular items, recent
ones less: on MovieLens-100K a reference of first ratings alone read returning users' traffic
as major drift (item popularity PSI 0.29) and one of recent ratings alone new users'; against
the half-and-half reference, new users' first ratings read 0.06 and returning users' 20 most
recent 0.08 (stable), traffic of nothing but first-10-rating supports 0.12 (moderate: a real
change of the mix). Whole histories are longer than any support (every MovieLens-100K user
has at least 20 ratings).

The reference holds: support-size bins fixed by the support range (bin 0: the cold start;
then sizes below the range, sizes within it, sizes beyond it: the last bin is empty in the
reference, so requests beyond the range read as drift); each training item's popularity
decile by interaction mass over the whole training set (decile 0: the head items that make
the first 10 % of interactions; a last bin for items the training set never saw) with the
share of the sampled *support items* per decile (the service counts a request's support items
the same way); the cold-start share; and a small seeded sample of the sampled supports, which
the service scores with the served model when it warms up (the predicted-score bins).

Written into the artifact at training time (:data:`DRIFT_FILE`, listed in the card's file
hashes), so a serving pod needs no training set to monitor drift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metarec.features.training_set import TrainingSetManifest
from metarec.training.config import TrainingConfig

DRIFT_FILE = "drift_reference.json"
DECILES = 10
SAMPLE_USERS = 64  # reference users whose support sets calibrate the predicted-score bins


class ReferenceUser(BaseModel):
    """A training user and their support set, to score with the served model."""

    model_config = ConfigDict(frozen=True)

    user_id: int | str
    support: list[tuple[int | str, float | None]] = Field(
        description="(item, rating) pairs, oldest first (rating None: an event)."
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
    support_range: tuple[int, int] | None = Field(
        default=None, description="The support sizes the version was trained for (min, max)."
    )
    cold_start_share: float | None = None
    item_ids: list[int | str] = Field(description="Items seen in training.")
    item_bins: list[int] = Field(description="Each seen item's popularity decile (0: head).")
    item_popularity_shares: list[float] = Field(
        description="Share of the sampled support items per decile, then 0.0 for unseen items."
    )
    samples: list[ReferenceUser] = Field(
        default_factory=list,
        description="A seeded sample of training users and their sampled support sets.",
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


def support_size_bins(
    sizes: np.ndarray, *, support_min: int, support_max: int
) -> tuple[list[float], list[float]]:
    """Bin edges fixed by the support range, and the shares of ``sizes`` per bin.

    Bins: 0 (the cold start), ``1 .. support_min - 1`` (below the range, when it starts above
    1), ``support_min .. support_max`` (the range) and ``> support_max`` (beyond it). Every size
    the version was trained for falls in one bin, so traffic of any mix of trained sizes reads
    as stable; sizes outside the range read as drift.
    """
    edges = sorted({1.0, float(support_min), float(support_max + 1)})
    bins = np.searchsorted(edges, np.asarray(sizes), side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return edges, (counts / max(counts.sum(), 1)).tolist()


def first_ratings(
    frame: pd.DataFrame, *, support_min: int, support_max: int, seed: int
) -> pd.DataFrame:
    """Each user's first ``k`` interactions by time, ``k`` seeded uniform in the support range.

    Args:
        frame: Interactions: ``user_id``, ``item_id``; ``event_timestamp`` orders them when
            present (else the frame's order within each user).
        support_min: Smallest support size.
        support_max: Largest support size.
        seed: Seeds each user's ``k``.

    Returns:
        The sampled rows, by user then time (a user with fewer than ``k`` keeps them all).
    """
    keys = ["user_id", "event_timestamp"] if "event_timestamp" in frame.columns else ["user_id"]
    ordered = frame.sort_values(keys, kind="stable")
    users = ordered["user_id"].unique()
    draws = np.random.default_rng(seed).integers(support_min, support_max + 1, size=len(users))
    k = pd.Series(draws, index=users).reindex(ordered["user_id"]).to_numpy()
    rank = ordered.groupby("user_id", sort=False).cumcount().to_numpy()
    return ordered[rank < k]


def support_windows(
    frame: pd.DataFrame, *, support_min: int, support_max: int, seed: int
) -> pd.DataFrame:
    """Each user's support as a request would carry it: half as new users, half as returning.

    Each user (seeded) is a new user, whose support is their *first* ``k`` interactions by
    time, or a returning user, whose support is their ``k`` *most recent* (what the online
    store gives for a known user); ``k`` seeded uniform in the support range.

    Args:
        frame: Interactions: ``user_id``, ``item_id``; ``event_timestamp`` orders them when
            present (else the frame's order within each user).
        support_min: Smallest support size.
        support_max: Largest support size.
        seed: Seeds each user's kind and ``k``.

    Returns:
        The sampled rows, by user then time (a user with fewer than ``k`` keeps them all).
    """
    keys = ["user_id", "event_timestamp"] if "event_timestamp" in frame.columns else ["user_id"]
    ordered = frame.sort_values(keys, kind="stable")
    users = ordered["user_id"].unique()
    rng = np.random.default_rng(seed)
    k = pd.Series(rng.integers(support_min, support_max + 1, size=len(users)), index=users)
    returning = pd.Series(rng.random(len(users)) < 0.5, index=users)
    by_row = ordered["user_id"].to_numpy()
    k_row, returning_row = k.reindex(by_row).to_numpy(), returning.reindex(by_row).to_numpy()
    groups = ordered.groupby("user_id", sort=False)
    rank = groups.cumcount().to_numpy()
    from_end = groups.cumcount(ascending=False).to_numpy()
    return ordered[np.where(returning_row, from_end < k_row, rank < k_row)]


def build_reference(
    frame: pd.DataFrame,
    *,
    support_min: int,
    support_max: int,
    source: str,
    sample_users: int = SAMPLE_USERS,
    seed: int = 0,
    supports: pd.DataFrame | None = None,
) -> DriftReference:
    """The drift reference of a training set (see the module's docstring).

    Args:
        frame: Training interactions: ``user_id``, ``item_id``; ``rating`` and
            ``event_timestamp`` when present.
        support_min: Smallest support size the version is trained for.
        support_max: Largest support size the version is trained for.
        source: What to record as its source.
        sample_users: Users whose sampled supports calibrate the predicted-score bins.
        seed: Seeds the support sizes and the user sample.
        supports: Rows of ``frame`` taken as the sampled supports (None:
            :func:`support_windows`; a benchmark compares other samplings).

    Returns:
        The reference.
    """
    if supports is None:
        supports = support_windows(
            frame, support_min=support_min, support_max=support_max, seed=seed
        )
    sizes = supports.groupby("user_id", sort=False).size().to_numpy()
    edges, shares = support_size_bins(sizes, support_min=support_min, support_max=support_max)
    popularity = frame["item_id"].value_counts(sort=True)
    deciles = popularity_deciles(popularity.to_numpy())
    at = pd.Index(popularity.index).get_indexer(supports["item_id"])
    mass = np.bincount(deciles[at], minlength=DECILES).astype(np.float64)
    return DriftReference(
        source=source,
        support_size_edges=edges,
        support_size_shares=shares,
        support_range=(support_min, support_max),
        cold_start_share=0.0,  # every user of an interaction table has an interaction
        item_ids=[_native(i) for i in popularity.index],
        item_bins=deciles.tolist(),
        item_popularity_shares=[*(mass / mass.sum()).tolist(), 0.0],
        samples=_samples(supports, sample_users, seed),
    )


def _native(value: object) -> int | str:
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def _samples(supports: pd.DataFrame, users: int, seed: int) -> list[ReferenceUser]:
    """A seeded sample of users with their sampled (item, rating) support pairs."""
    ids = supports["user_id"].unique()
    chosen = set(ids[np.random.default_rng(seed).permutation(len(ids))[:users]].tolist())
    samples = []
    for user, rows in supports[supports["user_id"].isin(chosen)].groupby("user_id", sort=True):
        ratings = rows["rating"].tolist() if "rating" in rows.columns else [None] * len(rows)
        support = [
            (_native(i), None if r is None else float(r))
            for i, r in zip(rows["item_id"], ratings, strict=True)
        ]
        samples.append(ReferenceUser(user_id=_native(user), support=support))
    return samples


def drift_reference_files(
    frame: pd.DataFrame, config: TrainingConfig, manifest: TrainingSetManifest
) -> dict[str, bytes]:
    """The artifact's drift reference file of a training run: ``{DRIFT_FILE: JSON bytes}``.

    Args:
        frame: The interactions the models learn from.
        config: The run's config (its support range and seed).
        manifest: The training set's manifest (recorded as the reference's source).
    """
    reference = build_reference(
        frame,
        support_min=config.train_support_min,
        support_max=max(config.train_support_max, config.train_support_min),
        source=f"{manifest.path} (fingerprint {manifest.fingerprint[:16]})",
        seed=config.seed,
    )
    return {DRIFT_FILE: reference.model_dump_json().encode()}

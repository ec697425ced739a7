"""Identifier stability: do the ids still mean the users and items of the reference?

A permutation of user or item ids inside a training set keeps every row valid. It shows as ids
whose attributes disagree with the reference's attributes of the same id (users: age, gender,
occupation; items: genres, release year), and, for items, as an item popularity whose ranking
no longer matches the reference's. The reference profile stores a short digest of each id's
attributes (never the values) and each item's rating count, for the ``MAX_IDS`` most active ids.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metarec.validation.outcome import ExpectationOutcome, at_most, check_outcome, skipped_outcome
from metarec.validation.suite import ReferenceCheckTolerances

USER_ATTRIBUTES: tuple[str, ...] = ("age", "gender", "occupation")
ITEM_ATTRIBUTES: tuple[str, ...] = ("genres", "release_year")
MAX_IDS = 20_000
_DRAWS = 5
_ENTITIES = {"user": ("user_id", USER_ATTRIBUTES), "item": ("item_id", ITEM_ATTRIBUTES)}


class IdentityStatistics(BaseModel):
    """What the reference records of its ids (per entity: attribute digests, changes)."""

    model_config = ConfigDict(frozen=True)

    user_attributes: dict[int, str] = Field(default_factory=dict, description="id → digest.")
    user_attribute_changes: float = Field(
        default=0.0, description="Share of users whose attributes vary within the reference."
    )
    item_attributes: dict[int, str] = Field(default_factory=dict, description="id → digest.")
    item_attribute_changes: float = 0.0
    item_counts: dict[int, int] = Field(default_factory=dict, description="Ratings per item.")
    item_popularity_split_half: float | None = Field(
        default=None,
        description="Rank correlation of ratings per item between two random halves of the "
        "reference: how stable its popularity ranking is at all.",
    )


def attribute_digests(frame: pd.DataFrame, entity: str) -> tuple[pd.Series, float] | None:
    """Per id, the digest of its latest attributes, and the share of ids whose attributes vary.

    Args:
        frame: A training set.
        entity: ``"user"`` or ``"item"``.

    Returns:
        (id → digest, share of ids with more than one attribute set), or None when a column
        is missing.
    """
    key, columns = _ENTITIES[entity]
    if any(column not in frame.columns for column in (key, *columns)):
        return None
    if "event_timestamp" in frame.columns:
        frame = frame.sort_values("event_timestamp", kind="stable")
    # One row per distinct (id, attributes), at its last occurrence, still in time order.
    distinct = frame[[key, *columns]].drop_duplicates(keep="last")
    changes = float((distinct.groupby(key).size() > 1).mean()) if len(distinct) else 0.0
    latest = distinct.drop_duplicates(subset=[key], keep="last")
    text = latest[columns[0]].astype("string").fillna("<NA>")
    for column in columns[1:]:
        text = text + "\x1f" + latest[column].astype("string").fillna("<NA>")
    digests = [hashlib.blake2b(value.encode(), digest_size=6).hexdigest() for value in text]
    return pd.Series(digests, index=latest[key].to_numpy()).sort_index(), changes


def identity_statistics(frame: pd.DataFrame) -> IdentityStatistics:
    """The identity statistics of a reference training set (the most active ``MAX_IDS`` ids)."""
    fields: dict[str, object] = {}
    for entity, (key, _) in _ENTITIES.items():
        found = attribute_digests(frame, entity)
        if found is None:
            continue
        digests, changes = found
        active = frame[key].value_counts().index[:MAX_IDS]
        fields[f"{entity}_attributes"] = {int(i): str(digests[i]) for i in active}
        fields[f"{entity}_attribute_changes"] = changes
    if "item_id" in frame.columns:
        counts = frame["item_id"].value_counts().iloc[:MAX_IDS]
        fields["item_counts"] = {int(i): int(c) for i, c in counts.items()}
        order = np.random.default_rng(0).permutation(len(frame))
        halves = [
            frame["item_id"].iloc[part].value_counts().reindex(counts.index, fill_value=0)
            for part in (order[: len(frame) // 2], order[len(frame) // 2 :])
        ]
        fields["item_popularity_split_half"] = _rank_correlation(*halves)
    return IdentityStatistics(**fields)


def attribute_check(
    frame: pd.DataFrame,
    stats: IdentityStatistics,
    tolerances: ReferenceCheckTolerances,
    *,
    entity: str,
) -> ExpectationOutcome:
    """Do the training set's ids carry the reference's attributes of the same id?"""
    key, columns = _ENTITIES[entity]
    name = f"{entity}_attributes_vs_reference"
    described = "/".join(columns)
    description = (
        f"Each {entity} id shared with the reference has the reference's {described} "
        "(ids permuted or reassigned inside the training set show here)."
    )
    reference: dict[int, str] = getattr(stats, f"{entity}_attributes")
    found = attribute_digests(frame, entity)
    if found is None:
        return skipped_outcome(
            name, description=description, reason=f"a {key} or {described} column is missing"
        )
    digests = found[0]
    common = digests.index.intersection(pd.Index(list(reference), dtype=digests.index.dtype))
    if len(common) < tolerances.min_common_ids:
        return skipped_outcome(
            name,
            description=description,
            reason=f"{len(common)} {entity} ids in common with the reference "
            f"(< {tolerances.min_common_ids}): nothing to compare",
        )
    expected = pd.Series([reference[int(i)] for i in common], index=common)
    changed = int((digests.loc[common] != expected).sum())
    share = changed / len(common)
    bound = getattr(stats, f"{entity}_attribute_changes") + tolerances.attribute_mismatch_abs
    return at_most(
        name,
        description=description,
        value=share,
        bound=bound,
        reason=f"{changed:,} of {len(common):,} {entity}s ({share:.1%}) have another "
        f"{described} than the reference's {entity} of the same id (at most {bound:.1%}): "
        f"{entity} ids may be permuted or reassigned",
    )


def _rank_correlation(left: pd.Series, right: pd.Series) -> float:
    """Spearman's rank correlation (0 when either side is constant)."""
    if left.nunique() < 2 or right.nunique() < 2:
        return 0.0
    return float(np.corrcoef(left.rank().to_numpy(), right.rank().to_numpy())[0, 1])


def item_popularity_check(
    frame: pd.DataFrame, stats: IdentityStatistics, tolerances: ReferenceCheckTolerances
) -> ExpectationOutcome:
    """Does item popularity rank as in the reference, as much as a sample of this size would?

    The expected correlation is the lower of two estimates: that of samples of the same size
    drawn from the reference's own item shares (seeded), so a small training set is not held to
    a large one's precision, and that between two random halves of the reference, so a
    reference whose popularity is mostly noise is not held to a ranking it does not have.
    """
    name = "item_popularity_rank_vs_reference"
    description = (
        "Spearman rank correlation of ratings per item with the reference, against what a "
        "sample of this size from the reference gives (item ids permuted show here)."
    )
    reference = pd.Series(stats.item_counts, dtype="float64")
    if reference.nunique() < 2:
        return skipped_outcome(
            name,
            description=description,
            reason="item popularity is uniform (or unknown) in the reference: no ranking "
            "to compare",
        )
    if "item_id" not in frame.columns:
        return skipped_outcome(name, description=description, reason="no item_id column")
    counts = frame.groupby("item_id").size().reindex(reference.index, fill_value=0)
    size = int(counts.sum())
    if size < tolerances.min_common_ids:
        return skipped_outcome(
            name, description=description, reason=f"only {size} ratings of reference items"
        )
    rng = np.random.default_rng(0)
    shares = (reference / reference.sum()).to_numpy()
    draws = [
        _rank_correlation(
            reference, pd.Series(rng.multinomial(size, shares), index=reference.index)
        )
        for _ in range(_DRAWS)
    ]
    expected = float(np.mean(draws))
    if stats.item_popularity_split_half is not None:
        expected = min(expected, stats.item_popularity_split_half)
    bound = expected - tolerances.popularity_rank_correlation_abs
    if bound <= 0:
        return skipped_outcome(
            name,
            description=description,
            reason=f"the reference's item popularity has no stable ranking (expected rank "
            f"correlation {expected:.2f}): item ids are checked by their attributes only",
        )
    rho = _rank_correlation(reference, counts)
    return check_outcome(
        name,
        description=description,
        value=rho,
        min_value=bound,
        success=rho >= bound,
        reason=f"rank correlation of item popularity with the reference {rho:.2f} < {bound:.2f} "
        f"(a clean sample of this size is expected at {expected:.2f}): item ids may be permuted",
    )

"""What a request adapts to: its support set (item rows and values) and the user's encoded row.

The support set is the request's own (``support``) or the user's recent ratings in the
catalogue. A rating version needs a rating per support item; a version trained on implicit
events (``label == "event"``) refuses them: each of its support items is an interaction, the
ranking scale's "liked" (:data:`INTERACTION`). Either mismatch is a 400 naming
``support[i].rating``.
"""

from __future__ import annotations

import numpy as np

from metarec.errors import ServingInputError
from metarec.features.store import EntityId
from metarec.serving.features import ItemMatrix, UserFeatures, user_columns
from metarec.serving.request_checks import check_count, item_rows
from metarec.serving.schemas import SupportRating
from metarec.training.encoding import FeatureEncoder

# The value of an interaction on the ranking scale: "liked", as a rating of 5 (what the ranker
# of an event version learnt positive interactions as).
INTERACTION = 5.0


def support_values(support: list[SupportRating], *, predicts_ratings: bool) -> np.ndarray:
    """The support items' values: their ratings, or (event versions) the interaction value.

    Raises:
        ServingInputError: (400) A rating version's item without a rating, or an event
            version's item with one; the field is ``support[i].rating``.
    """
    for n, entry in enumerate(support):
        if predicts_ratings and entry.rating is None:
            raise ServingInputError(
                f"support[{n}].rating",
                "this version adapts on ratings, and this support item has none.",
                fix="give each support item its 1-5 rating (GET /metadata: label rating).",
                status=400,
            )
        if not predicts_ratings and entry.rating is not None:
            raise ServingInputError(
                f"support[{n}].rating",
                "this version learnt from implicit events and takes no ratings.",
                fix="send the items the user interacted with, without ratings "
                "(GET /metadata: label event).",
                status=400,
            )
    if not predicts_ratings:
        return np.full(len(support), INTERACTION, dtype=np.float32)
    return np.array([s.rating for s in support], dtype=np.float32)


def recent_ratings(
    matrix: ItemMatrix, user: UserFeatures, *, limit: int
) -> list[tuple[EntityId, float]]:
    """The user's recent (item, rating) pairs that are in the catalogue, newest first."""
    return [
        (i, r)
        for i, r in zip(user.recent_item_ids, user.recent_ratings, strict=False)
        if i in matrix.index
    ][:limit]


def support_set(
    items: ItemMatrix,
    user: UserFeatures | None,
    support: list[SupportRating] | None,
    *,
    limit: int,
    predicts_ratings: bool,
    text_items: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Support (item rows, values) from the request or the user's recent ratings.

    A known user without recent ratings in the catalogue (an event snapshot has none) gets
    an empty support set: the lists then come from their attributes alone (cold start).

    Args:
        items: The catalogue's item matrix.
        user: The request's user (None: an anonymous request).
        support: The request's support set (None: the user's recent ratings).
        limit: Most support items (``serving.max_support_size``).
        predicts_ratings: Whether the version adapts on ratings (else on interactions).
        text_items: Whether the version's item ids are text.

    Raises:
        ServingInputError: An empty or oversized support set, a rating mismatch, an unknown
            support item, or neither a user nor a support set.
    """
    matrix = items
    if support is not None:
        if not support:
            raise ServingInputError(
                "support",
                "the support set is empty.",
                fix="send at least one item ({item_id, rating}, or {item_id} for a "
                "version trained on events), or omit support to use the user's recent "
                "ratings.",
            )
        check_count("support", len(support), limit)
        ids = [s.item_id for s in support]
        ratings = support_values(support, predicts_ratings=predicts_ratings)
        rows = item_rows(matrix, "support", ids, text_items=text_items)
    elif user is not None:
        # A new user with attributes but no ratings in the catalogue yet: the model's
        # unadapted start from those attributes (an empty support set).
        known = recent_ratings(matrix, user, limit=limit)
        ids = [i for i, _ in known]
        ratings = np.array([r for _, r in known], dtype=np.float32)
        rows = np.array([matrix.index[i] for i in ids], dtype=np.int64)
    else:
        raise ServingInputError(
            "support",
            "neither user_id nor support was sent.",
            fix="send a user_id (its recent ratings are the support set) or a support set.",
        )
    return rows, ratings


def user_codes(
    encoder: FeatureEncoder, matrix: ItemMatrix, user: UserFeatures | None
) -> np.ndarray:
    """The user's encoded row restricted to user columns (zeros for an anonymous request)."""
    codes = np.zeros(matrix.codes.shape[1], dtype=matrix.codes.dtype)
    if user is not None:
        cols = user_columns(encoder)
        codes[cols] = user.codes[cols]
    return codes

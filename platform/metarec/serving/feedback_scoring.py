"""Rated feedback scored against the version's predictions: the errors of the online MAE.

Each rated event is compared with the prediction remembered for its (user, item), from the
``/recommend`` or ``/predict`` answer that served it; an event with none is predicted now,
adapted to the user's recent ratings (one job per user, batched together), and remembered.
Only a version that predicts ratings scores feedback; events without a rating never count here.
"""

from __future__ import annotations

import asyncio

import numpy as np

from metarec.data.schema import RATING_MAX, RATING_MIN
from metarec.features.store import EntityId
from metarec.serving.adapter import AdaptationJob
from metarec.serving.batching import MicroBatcher
from metarec.serving.features import ItemMatrix, UserFeatures
from metarec.serving.quality import PredictionMemory
from metarec.serving.request_checks import item_rows
from metarec.serving.schemas import FeedbackEvent
from metarec.serving.support import recent_ratings, user_codes
from metarec.training.encoding import FeatureEncoder


async def rating_errors(
    items: ItemMatrix,
    events: list[FeedbackEvent],
    users: dict[EntityId, UserFeatures],
    batcher: MicroBatcher[AdaptationJob, np.ndarray],
    *,
    memory: PredictionMemory,
    encoder: FeatureEncoder,
    max_support_size: int,
    text_items: bool,
) -> list[float]:
    """The absolute error of each rated event's rating against its prediction.

    Args:
        items: The catalogue's item matrix.
        events: Feedback events, each with a rating.
        users: The events' users' features, by user id.
        batcher: The rating model's micro-batcher (predictions not remembered are made now).
        memory: Predictions served so far; the ones made now are added.
        encoder: The version's feature encoder (the users' encoded rows).
        max_support_size: Most recent ratings a prediction made now adapts to.
        text_items: Whether the version's item ids are text.

    Returns:
        One error per event, in order.
    """
    predicted: list[float | None] = [memory.get(e.user_id, e.item_id) for e in events]
    missing: dict[EntityId, list[int]] = {}
    for n, value in enumerate(predicted):
        if value is None:
            missing.setdefault(events[n].user_id, []).append(n)
    jobs = []
    for user_id, positions in missing.items():
        user = users[user_id]
        known = recent_ratings(items, user, limit=max_support_size)
        support_rows = np.array([items.index[i] for i, _ in known], dtype=np.int64)
        query_ids = [events[n].item_id for n in positions]
        job = AdaptationJob(
            items,
            user_codes(encoder, items, user),
            support_rows,
            np.array([r for _, r in known], np.float32),
            item_rows(items, "events", query_ids, text_items=text_items),
        )
        jobs.append(batcher.submit(job))
    for (user_id, positions), values in zip(
        missing.items(), await asyncio.gather(*jobs), strict=True
    ):
        values = np.clip(values, RATING_MIN, RATING_MAX)
        for n, value in zip(positions, values, strict=True):
            predicted[n] = float(value)
        memory.remember(user_id, [events[n].item_id for n in positions], [float(v) for v in values])
    return [
        abs(float(p) - float(e.rating))  # type: ignore[arg-type]
        for p, e in zip(predicted, events, strict=True)
    ]

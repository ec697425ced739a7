"""Rating and ranking metrics over users' query sets.

MAE and RMSE pool every query rating; nDCG@k ranks each user's query items by predicted rating
(gain ``2^rating − 1``), and is averaged over users.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_NAMES = ("mae", "rmse", "ndcg@1", "ndcg@3", "ndcg@5")
NDCG_KS = (1, 3, 5)


def ndcg_at_k(pred: np.ndarray, truth: np.ndarray, k: int) -> float:
    """nDCG@k of one user's query set: items ranked by ``pred``, gains ``2^truth − 1``.

    Ties in ``pred`` keep the query order (a stable sort). A user whose ideal DCG is 0 scores 1.
    """
    gains = np.power(2.0, np.asarray(truth, dtype=np.float64)) - 1.0
    order = np.argsort(-np.asarray(pred, dtype=np.float64), kind="stable")[:k]
    discounts = 1.0 / np.log2(np.arange(2, len(order) + 2))
    dcg = float((gains[order] * discounts).sum())
    ideal = np.sort(gains)[::-1][: len(order)]
    idcg = float((ideal * discounts).sum())
    return dcg / idcg if idcg > 0 else 1.0


def evaluate_predictions(
    preds: Sequence[np.ndarray], truths: Sequence[np.ndarray]
) -> dict[str, float]:
    """MAE, RMSE and nDCG@1/3/5 of per-user query predictions.

    Args:
        preds: One array of predicted ratings per user.
        truths: The matching true ratings.

    Returns:
        ``{"mae", "rmse", "ndcg@1", "ndcg@3", "ndcg@5"}``.
    """
    if len(preds) != len(truths) or not preds:
        raise ValueError("need the same, non-zero number of prediction and truth arrays")
    p = np.concatenate([np.asarray(a, dtype=np.float64) for a in preds])
    t = np.concatenate([np.asarray(a, dtype=np.float64) for a in truths])
    errors = p - t
    result = {"mae": float(np.abs(errors).mean()), "rmse": float(np.sqrt((errors**2).mean()))}
    for k in NDCG_KS:
        result[f"ndcg@{k}"] = float(
            np.mean([ndcg_at_k(a, b, k) for a, b in zip(preds, truths, strict=True)])
        )
    return result

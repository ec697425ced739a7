"""Top-N metrics of whole-catalogue rankings (the product's first task, ARCHITECTURE.md).

Every user ranks the full catalogue by a score; items the caller excludes (the support set) carry
the score ``-inf``. Rankings are deterministic: higher score first, ties broken by the lower item
(column) index, and ``-inf`` items never ahead of a finite one.

Per-user metrics, against a boolean ``relevant`` matrix:

* ``recall@20``: hits in the top 20 / ``min(20, n_relevant)`` (Liang et al. 2018).
* ``ndcg@20``: binary gain, ``1 / log2(rank + 1)`` discount, ideal DCG over ``min(n_relevant, 20)``.
* ``hit@10``: 1 if any relevant item is in the top 10.
* ``mrr``: 1 / (1-based rank of the first relevant item in the full ranking).

List metrics, over every user's top 10: ``coverage`` (distinct items / catalogue size),
``personalisation`` (1 − mean pairwise Jaccard similarity of the lists) and ``popularity`` (mean
popularity percentile of the recommended items, 1 = most popular).
"""

from __future__ import annotations

import numpy as np

TOPN_METRICS = (
    "recall@20",
    "ndcg@20",
    "hit@10",
    "mrr",
    "coverage",
    "personalisation",
    "popularity",
)
RECALL_K = 20
NDCG_K = 20
HIT_K = 10
LIST_K = 10


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best items of every user, best first.

    Ties are broken by the lower column index, so the result is deterministic; ``-inf`` (excluded)
    items never come before a finite one. A user with fewer than ``k`` finite scores gets the
    remaining places filled with ``-inf`` items, lowest index first: the caller decides whether
    such filler counts as a recommendation.

    Runs in ``O(U * I)`` (a partition, not a full sort), plus a sort of the ``k`` kept items.

    Args:
        scores: ``(U, I)`` float scores; ``-inf`` marks excluded items. NaN is rejected.
        k: How many items to return per user, ``1 <= k <= I``.

    Returns:
        ``(U, k)`` int64 item column indices, best first.

    Raises:
        ValueError: If ``scores`` is not 2-D, holds NaN, or ``k`` is out of range.
    """
    scores = _check_scores(scores)
    n_users, n_items = scores.shape
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be between 1 and the number of items ({n_items}), got {k}")
    neg = -scores  # (U, I), ascending order = best first; -inf items become +inf
    kth = np.partition(neg, k - 1, axis=1)[:, k - 1 : k]  # (U, 1) value of the k-th best
    better = neg < kth  # (U, I) strictly ahead of the k-th best: fewer than k per row
    tied = neg == kth  # (U, I) tied with the k-th best (inf == inf holds for -inf rows)
    room = k - better.sum(axis=1, keepdims=True)  # (U, 1) places left for tied items
    keep = better | (tied & (np.cumsum(tied, axis=1) <= room))  # (U, I) exactly k per row
    cols = np.nonzero(keep)[1].reshape(n_users, k)  # (U, k) ascending column order
    kept = np.take_along_axis(neg, cols, axis=1)  # (U, k)
    order = np.argsort(kept, axis=1, kind="stable")  # (U, k) stable: lower column wins ties
    return np.take_along_axis(cols, order, axis=1)  # (U, k)


def per_user_metrics(scores: np.ndarray, relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Recall@20, NDCG@20, HitRate@10 and MRR of every user.

    A catalogue smaller than a cut-off uses all its items (``k = min(cut-off, I)``). A relevant
    item the caller excluded (score ``-inf``) is ranked after every finite item, so it counts as
    a miss unless the cut-off reaches into the ``-inf`` tail.

    Args:
        scores: ``(U, I)`` float scores; ``-inf`` marks excluded items.
        relevant: ``(U, I)`` bool, the items each user should find; every user needs one.

    Returns:
        ``{"recall@20", "ndcg@20", "hit@10", "mrr"}``, each a ``(U,)`` float64 array.

    Raises:
        ValueError: If shapes differ, scores hold NaN, or a user has no relevant item.
    """
    metrics, _ = _per_user(scores, relevant)
    return metrics


def list_metrics(top10: np.ndarray, *, n_items: int, popularity: np.ndarray) -> dict[str, float]:
    """Coverage, personalisation and popularity of the users' recommendation lists.

    Args:
        top10: ``(U, L)`` int item indices, each row one user's list (usually ``L = 10``).
        n_items: Catalogue size ``I``.
        popularity: ``(I,)`` interaction counts of the items (training users).

    Returns:
        ``{"coverage", "personalisation", "popularity"}``: distinct recommended items /
        ``n_items``; 1 − mean Jaccard similarity of the lists over all pairs of distinct users
        (1.0 with fewer than two users); mean :func:`popularity_percentile` of every entry.

    Raises:
        ValueError: If ``top10`` is not a non-empty 2-D index array within ``[0, n_items)``, or
            ``popularity`` is not ``(n_items,)``.
    """
    top10 = np.asarray(top10)
    if top10.ndim != 2 or top10.shape[0] == 0 or top10.shape[1] == 0:
        raise ValueError(f"top10 must be a non-empty (users, list length) array, got {top10.shape}")
    if not np.issubdtype(top10.dtype, np.integer):
        raise ValueError(f"top10 must hold integer item indices, got dtype {top10.dtype}")
    if top10.min() < 0 or top10.max() >= n_items:
        raise ValueError(
            f"top10 holds item indices outside [0, {n_items}): min {top10.min()}, "
            f"max {top10.max()}; pass n_items = the catalogue size the scores were ranked over"
        )
    popularity = np.asarray(popularity)
    if popularity.shape != (n_items,):
        raise ValueError(
            f"popularity must have shape ({n_items},) (one count per item), got {popularity.shape}"
        )
    n_users = top10.shape[0]
    chosen = np.zeros((n_users, n_items), dtype=np.float32)  # (U, I) 1 where recommended
    np.put_along_axis(chosen, top10, 1.0, axis=1)
    coverage = float(chosen.any(axis=0).sum() / n_items)
    if n_users < 2:
        personalisation = 1.0
    else:
        # Counts are small integers, exact in float32; the product is U x I x U work.
        inter = (chosen @ chosen.T).astype(np.float64)  # (U, U) |A ∩ B|
        sizes = np.diag(inter)  # (U,) |A|, at least 1
        union = sizes[:, None] + sizes[None, :] - inter  # (U, U) |A ∪ B| >= 1
        jaccard = inter / union  # (U, U), diagonal 1
        pair_sum = jaccard.sum() - n_users  # ordered pairs of distinct users
        personalisation = float(1.0 - pair_sum / (n_users * (n_users - 1)))
    percentile = popularity_percentile(popularity)  # (I,)
    return {
        "coverage": coverage,
        "personalisation": personalisation,
        "popularity": float(percentile[top10].mean()),
    }


def popularity_percentile(counts: np.ndarray) -> np.ndarray:
    """Each item's popularity percentile in ``[0, 1]`` (1 = most popular, 0 = least).

    The percentile is the item's rank among items by count, ascending and 1-based, with tied
    items sharing their average rank, scaled by ``(rank − 1) / (I − 1)``. A catalogue of one item
    (or of items that all tie) sits at 0.5.

    Args:
        counts: ``(I,)`` interaction counts.

    Returns:
        ``(I,)`` float64 percentiles.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {counts.shape}")
    n_items = counts.size
    if n_items == 1:
        return np.full(1, 0.5)
    _, inverse, group_sizes = np.unique(counts, return_inverse=True, return_counts=True)
    starts = np.cumsum(group_sizes) - group_sizes  # (G,) items below each count group
    average_rank = starts + (group_sizes + 1) / 2.0  # (G,) 1-based mean rank of the group
    return (average_rank[inverse.reshape(-1)] - 1.0) / (n_items - 1)  # (I,)


def topn_metrics(
    scores: np.ndarray, relevant: np.ndarray, *, popularity: np.ndarray
) -> dict[str, float]:
    """Every metric of :data:`TOPN_METRICS`, averaged over users, in that order.

    Args:
        scores: ``(U, I)`` float scores; ``-inf`` marks excluded items.
        relevant: ``(U, I)`` bool, the items each user should find; every user needs one.
        popularity: ``(I,)`` interaction counts of the items.

    Returns:
        Means of :func:`per_user_metrics` plus :func:`list_metrics` of every user's top 10.
    """
    per_user, ranked = _per_user(scores, relevant)
    lists = list_metrics(ranked[:, :LIST_K], n_items=np.shape(scores)[1], popularity=popularity)
    values = {name: float(v.mean()) for name, v in per_user.items()} | lists
    return {name: values[name] for name in TOPN_METRICS}


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(f"scores must be a (users, items) array, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores hold NaN; mark excluded items with -inf instead")
    return scores


def _per_user(scores: np.ndarray, relevant: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-user metrics and the ``(U, max cut-off)`` top items they were computed from."""
    scores = _check_scores(scores)
    relevant = np.asarray(relevant)
    if relevant.shape != scores.shape:
        raise ValueError(
            f"scores {scores.shape} and relevant {relevant.shape} must have the same shape"
        )
    relevant = relevant.astype(bool)
    n_relevant = relevant.sum(axis=1)  # (U,)
    empty = np.flatnonzero(n_relevant == 0)
    if empty.size:
        raise ValueError(
            f"{empty.size} user(s) have no relevant item (rows {empty[:5].tolist()}"
            f"{', ...' if empty.size > 5 else ''}); drop them before computing metrics"
        )
    n_items = scores.shape[1]
    depth = min(max(RECALL_K, NDCG_K, HIT_K, LIST_K), n_items)
    ranked = top_k(scores, depth)  # (U, depth)
    hits = np.take_along_axis(relevant, ranked, axis=1)  # (U, depth) bool

    k_recall = min(RECALL_K, n_items)
    recall = hits[:, :k_recall].sum(axis=1) / np.minimum(k_recall, n_relevant)  # (U,)

    k_ndcg = min(NDCG_K, n_items)
    discounts = 1.0 / np.log2(np.arange(2, k_ndcg + 2))  # (k,)
    dcg = hits[:, :k_ndcg] @ discounts  # (U,)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k_ndcg) - 1]  # (U,)
    ndcg = dcg / ideal

    hit = hits[:, : min(HIT_K, n_items)].any(axis=1).astype(np.float64)  # (U,)

    # MRR over the full ranking without sorting it: the first relevant item is the relevant one
    # with the highest score (lowest column among ties); its rank counts the items ahead of it.
    best = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)  # (U, 1)
    first = np.argmax(relevant & (scores == best), axis=1)[:, None]  # (U, 1) column
    columns = np.arange(n_items)[None, :]  # (1, I)
    ahead = (scores > best) | ((scores == best) & (columns < first))  # (U, I)
    mrr = 1.0 / (ahead.sum(axis=1) + 1.0)  # (U,)

    metrics = {"recall@20": recall, "ndcg@20": ndcg, "hit@10": hit, "mrr": mrr}
    return metrics, ranked

"""The predicted-score reference: the served model's scores for the reference's users.

The training set holds ratings, not the scores a version serves, so the service computes them
when it warms up: each sampled training user
(:class:`~metarec.training.drift_profile.ReferenceUser`) is scored as ``/recommend`` would score
them (their sampled first ratings as the support set, their own features, every other catalogue
item a candidate), and the top ``k`` scores of each list are the reference distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from metarec.features.store import EntityId
from metarec.serving.features import ItemMatrix
from metarec.serving.support import INTERACTION
from metarec.training.drift_profile import ReferenceUser

# (items, user codes, support rows, support values, candidate rows): one ranking problem.
Problem = tuple[ItemMatrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def problem(
    items: ItemMatrix, user: ReferenceUser, codes: np.ndarray, *, interactions: bool
) -> Problem:
    """A reference user's ranking problem, as ``/recommend`` builds it.

    Args:
        items: The catalogue.
        user: The user and their support set (items outside the catalogue dropped).
        codes: The user's encoded row (zeros: unknown to the online store).
        interactions: The version adapts on interactions (each support item "liked").
    """
    known = [(items.index[i], r) for i, r in user.support if i in items.index]
    rows = np.array([row for row, _ in known], dtype=np.int64)
    values = [INTERACTION if interactions or r is None else r for _, r in known]
    keep = np.ones(len(items.item_ids), dtype=bool)
    keep[rows] = False
    return items, codes, rows, np.array(values, dtype=np.float32), np.flatnonzero(keep)


def reference_scores(
    users: Sequence[ReferenceUser],
    items: ItemMatrix,
    *,
    codes: Callable[[EntityId], np.ndarray],
    score: Callable[[list[Problem]], list[np.ndarray]],
    interactions: bool,
    k: int,
    batch: int,
) -> np.ndarray:
    """The top-``k`` served scores of every reference user, concatenated.

    Args:
        users: The reference's sampled users.
        items: The catalogue.
        codes: A user id → their encoded row.
        score: Scores of a batch of problems (the served ranker, else the rating model).
        interactions: The version adapts on interactions.
        k: List length (``/recommend``'s default).
        batch: Problems scored together.
    """
    problems = [problem(items, u, codes(u.user_id), interactions=interactions) for u in users]
    tops = []
    for start in range(0, len(problems), batch):
        for scores in score(problems[start : start + batch]):
            tops.append(np.sort(scores)[-k:])
    return np.concatenate(tops) if tops else np.zeros(0)

"""Paired comparisons over users: the candidate's and production's metric on the same users.

A regression rule compares the candidate with production on the same held-out users and the
same support sets. The mean difference of two models that differ only by their training seed
moves by chance, at times by as much as a margin, so a bare mean-difference rule can reject
honest retrains. With per-user values the gate tests the difference paired over users (a
seeded bootstrap that resamples users), and a rule is broken only when the candidate is worse
than production by more than its margin *significantly*: the one-sided lower confidence bound
of the regression is above the margin (a non-inferiority test).

Per-user values are ``[scenario][cell][metric][user] -> (candidate, production, weight)``; the
weight makes the mean of a cell the card's (``1`` for an nDCG, the number of query ratings for
MAE, which the card pools over ratings). Nothing here reads files or clocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# [scenario][cell][metric][user] -> (candidate value, production value, weight).
PerUser = Mapping[str, Mapping[str, Mapping[str, Mapping[Any, tuple[float, float, float]]]]]


@dataclass(frozen=True)
class PairedValues:
    """Per-user values of both versions on the same users, per table (None: not available).

    Attributes:
        rating: The rating table's per-user values (MAE, nDCG@k).
        ranking: The ranking table's per-user values (nDCG@20).
        basis: How they were obtained (named in the decision).
    """

    rating: PerUser | None = None
    ranking: PerUser | None = None
    basis: str = "per-user values of both versions on the candidate's held-out users"


@dataclass(frozen=True)
class PairedRequest:
    """What to pair: each version's rating method, the metrics and the cells the rules read.

    Attributes:
        candidate_method: The candidate's rating method (None: no rating table is paired).
        production_method: Production's rating method (its own served method).
        rating_metrics: Rating metrics the regression rules read (``mae``, ``ndcg@k``).
        support_sizes: The rating table's support sizes (``5``, ``all``).
        ranking_method: The ranking table's method (the served ranker, ``ranker``).
        ranking_cells: Ranking cells such as ``random@10`` (empty: no ranking is paired).
        scenarios: The scenarios of the held-out users.
    """

    candidate_method: str | None
    production_method: str | None
    rating_metrics: tuple[str, ...]
    support_sizes: tuple[str, ...]
    ranking_method: str
    ranking_cells: tuple[str, ...]
    scenarios: tuple[str, ...]


@dataclass(frozen=True)
class PairedTest:
    """A paired bootstrap of the regression (positive: the candidate is worse) over users.

    Attributes:
        users: How many users were paired.
        regression: The regression of the mean (the rule's own statistic: the mean over the
            cells of each cell's weighted mean difference).
        lower: The one-sided ``1 - alpha`` lower confidence bound of ``regression``.
        upper: The one-sided ``1 - alpha`` upper confidence bound (shown with ``lower``).
        margin: The margin tested against (the rule's allowed regression).
        p_value: The bootstrap p-value of "the regression is at most the margin".
        alpha: The test's level.
    """

    users: int
    regression: float
    lower: float
    upper: float
    margin: float
    p_value: float
    alpha: float

    @property
    def broken(self) -> bool:
        """Worse than production by more than the margin, significantly (lower bound above)."""
        return self.regression > self.margin and self.lower > self.margin

    def describe(self) -> str:
        """The numbers of the test, for the decision's detail."""
        level = round(100 * (1 - self.alpha))
        return (
            f"paired over {self.users} users: mean regression {self.regression:+.4f}, one-sided "
            f"{level}% CI [{self.lower:+.4f}, {self.upper:+.4f}], p={self.p_value:.3f} for "
            f"regression > margin {self.margin:g} at alpha {self.alpha:g}"
        )


def select_users(
    per_user: PerUser, cells: Sequence[tuple[str, str]], metric: str
) -> list[Mapping[Any, tuple[float, float, float]]] | None:
    """The per-user values of ``metric`` in each of ``cells`` (None: a cell has none)."""
    chosen = []
    for scenario, cell in cells:
        by_cell = per_user.get(scenario) or {}
        values = (by_cell.get(cell) or {}).get(metric)
        if not values:
            return None
        chosen.append(values)
    return chosen


def paired_test(
    cells: Sequence[Mapping[Any, tuple[float, float, float]]],
    *,
    lower_is_better: bool,
    margin: float,
    alpha: float,
    resamples: int,
    seed: int,
    scale: float = 1.0,
) -> PairedTest:
    """Bootstrap the regression of the candidate over the users of one or more cells.

    Users are resampled (the same draw in every cell, so a user's cells move together); each
    cell's weighted mean difference is recomputed and the cells are averaged.

    Args:
        cells: Per cell, ``{user: (candidate, production, weight)}``.
        lower_is_better: Whether a smaller value is better (errors) or larger (rankings).
        margin: The allowed regression the test is against (the p-value's null: at most it).
        alpha: One-sided level of the confidence bounds and of the p-value.
        resamples: Bootstrap resamples.
        seed: Seeds the resampling (the same numbers give the same test).
        scale: The regression is divided by it (a relative rule: production's mean).

    Returns:
        The test.
    """
    users = sorted({user for values in cells for user in values}, key=str)
    index = {user: i for i, user in enumerate(users)}
    diffs = np.zeros((len(users), len(cells)))
    weights = np.zeros((len(users), len(cells)))
    sign = 1.0 if lower_is_better else -1.0
    for c, values in enumerate(cells):
        for user, (candidate, production, weight) in values.items():
            diffs[index[user], c] = sign * (candidate - production) / scale
            weights[index[user], c] = weight
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(users), np.full(len(users), 1.0 / len(users)), size=resamples)
    boot = _statistic(counts.astype(float), diffs, weights)
    point = float(_statistic(np.ones((1, len(users))), diffs, weights)[0])
    return PairedTest(
        users=len(users),
        regression=point,
        lower=float(np.quantile(boot, alpha)),
        upper=float(np.quantile(boot, 1.0 - alpha)),
        margin=margin,
        p_value=float((np.sum(boot <= margin) + 1) / (resamples + 1)),
        alpha=alpha,
    )


def _statistic(counts: np.ndarray, diffs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per resample (rows of ``counts``), the mean over cells of each cell's weighted mean."""
    mass = counts @ weights  # (B, C)
    total = counts @ (weights * diffs)
    means = np.where(mass > 0, total / np.where(mass > 0, mass, 1.0), np.nan)
    present = ~np.isnan(means)  # a resample may draw none of a small cell's users
    return np.where(present, means, 0.0).sum(axis=1) / np.maximum(present.sum(axis=1), 1)

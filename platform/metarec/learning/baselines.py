"""Non-meta baselines: global mean, item bias, and user + item bias fitted on the support set.

They predict from item ids and ratings only (numpy). Item biases come from the meta-training
ratings; an item never seen there (a new item) gets bias 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BiasModel:
    """``mean + item_bias[item] (+ user bias fitted on the support set)``.

    Attributes:
        mean: Global mean rating of the training ratings.
        item_ids: Sorted item ids with a bias.
        item_bias: Regularised item biases, aligned with ``item_ids``.
        user_reg: Shrinkage of the per-user bias toward 0 (in pseudo-ratings).
    """

    mean: float
    item_ids: np.ndarray
    item_bias: np.ndarray
    user_reg: float = 3.0

    @classmethod
    def fit(
        cls, items: np.ndarray, ratings: np.ndarray, *, item_reg: float = 5.0, user_reg: float = 3.0
    ) -> BiasModel:
        """Fit the global mean and regularised item biases on training ratings."""
        ratings = np.asarray(ratings, dtype=np.float64)
        mean = float(ratings.mean())
        item_ids, inverse = np.unique(np.asarray(items), return_inverse=True)
        sums = np.bincount(inverse, weights=ratings - mean, minlength=len(item_ids))
        counts = np.bincount(inverse, minlength=len(item_ids))
        return cls(mean, item_ids, sums / (counts + item_reg), user_reg)

    def item_biases(self, items: np.ndarray) -> np.ndarray:
        """Bias of each item in ``items`` (0 for unknown items)."""
        items = np.asarray(items)
        if len(self.item_ids) == 0:
            return np.zeros(len(items))
        pos = np.clip(np.searchsorted(self.item_ids, items), 0, len(self.item_ids) - 1)
        return np.where(self.item_ids[pos] == items, self.item_bias[pos], 0.0)

    def global_mean(self, query_items: np.ndarray) -> np.ndarray:
        """Predict the global mean for every query item."""
        return np.full(len(query_items), self.mean)

    def item(self, query_items: np.ndarray) -> np.ndarray:
        """Predict ``mean + item bias``."""
        return self.mean + self.item_biases(query_items)

    def user_item(
        self, support_items: np.ndarray, support_ratings: np.ndarray, query_items: np.ndarray
    ) -> np.ndarray:
        """Predict ``mean + item bias + user bias``, the user bias fitted on the support set."""
        residual = np.asarray(support_ratings, dtype=np.float64) - self.item(support_items)
        user_bias = residual.sum() / (len(residual) + self.user_reg)
        return self.item(query_items) + user_bias

"""Simple item-based rankers that a meta-learned ranker must beat (ARCHITECTURE.md).

Every model is a fold-in: it is fitted on a training interaction matrix (training users × items),
then scores new users from their support items only. ``score`` takes the fold-in users' weighted
support rows, ``(U, I)`` float32 (see :func:`implicit_weights` and :func:`interaction_matrix`),
and returns ``(U, I)`` float32 scores; the caller sets excluded items (the support) to ``-inf``
and ranks with :func:`metarec.learning.ranking_metrics.top_k`. Hyper-parameters (``shrinkage``,
``neighbours``, ``l2``) are tuned by the caller on validation users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from metarec.learning.ranking_metrics import top_k

LIKED_RATING = 4.0
DISLIKED_WEIGHT = 0.5


def implicit_weights(ratings: np.ndarray, *, scheme: Literal["binary", "weighted"]) -> np.ndarray:
    """Turn explicit ratings into implicit-feedback weights.

    Rule: ``binary`` gives 1.0 to every rating (an interaction is an interaction); ``weighted``
    gives 1.0 to ratings ``>= 4`` (liked) and 0.5 to every rating below 4 (seen, not liked;
    ``<= 3`` on a 1–5 scale).

    Args:
        ratings: Ratings of any shape.
        scheme: ``"binary"`` or ``"weighted"``.

    Returns:
        float32 weights of the same shape.

    Raises:
        ValueError: If ``scheme`` is unknown or a rating is not finite.
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    if not np.isfinite(ratings).all():
        raise ValueError("ratings hold NaN or inf; drop those rows before weighting")
    if scheme == "binary":
        return np.ones(ratings.shape, dtype=np.float32)
    if scheme == "weighted":
        return np.where(ratings >= LIKED_RATING, 1.0, DISLIKED_WEIGHT).astype(np.float32)
    raise ValueError(f"scheme must be 'binary' or 'weighted', got {scheme!r}")


def interaction_matrix(
    users: np.ndarray, items: np.ndarray, values: np.ndarray, *, n_users: int, n_items: int
) -> np.ndarray:
    """Dense ``(n_users, n_items)`` float32 matrix with ``values`` at ``(users, items)``.

    Cells without an interaction are 0. A ``(user, item)`` pair listed more than once keeps its
    **last** value (in input order: pass time-ordered rows to keep the latest rating), so
    implicit weights stay in their range instead of adding up.

    Args:
        users: ``(N,)`` int user rows in ``[0, n_users)``.
        items: ``(N,)`` int item columns in ``[0, n_items)``.
        values: ``(N,)`` values (ratings or implicit weights).
        n_users: Number of rows.
        n_items: Number of columns.

    Returns:
        ``(n_users, n_items)`` float32 matrix.

    Raises:
        ValueError: If the arrays are not 1-D of one length, or an index is out of range.
    """
    users, items, values = np.asarray(users), np.asarray(items), np.asarray(values)
    if not (users.ndim == items.ndim == values.ndim == 1) or not (
        len(users) == len(items) == len(values)
    ):
        raise ValueError(
            f"users, items and values must be 1-D of one length, got shapes {users.shape}, "
            f"{items.shape}, {values.shape}"
        )
    for name, index, size in (("users", users, n_users), ("items", items, n_items)):
        if index.size and not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"{name} must be integer indices, got dtype {index.dtype}")
        if index.size and (index.min() < 0 or index.max() >= size):
            raise ValueError(
                f"{name} indices must lie in [0, {size}), got min {index.min()}, max "
                f"{index.max()}; map ids to dense indices first"
            )
    matrix = np.zeros((n_users, n_items), dtype=np.float32)
    if users.size == 0:
        return matrix
    cells = users.astype(np.int64) * n_items + items.astype(np.int64)  # (N,)
    # First occurrence in the reversed order = last occurrence in input order.
    _, first_reversed = np.unique(cells[::-1], return_index=True)
    last = len(cells) - 1 - first_reversed  # (distinct cells,)
    matrix[users[last], items[last]] = values[last]
    return matrix


@dataclass(frozen=True, eq=False)
class Popularity:
    """Scores every item by how many training users interacted with it.

    Attributes:
        counts: ``(I,)`` float32 number of training users with a non-zero entry for the item.
    """

    counts: np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray) -> Popularity:
        """Count the training users of every item.

        Args:
            train: ``(N_users, I)`` interaction matrix; non-zero = interacted.
        """
        train = _check_matrix(train, "train")
        return cls(counts=(train != 0).sum(axis=0).astype(np.float32))  # (I,)

    def score(self, support: np.ndarray) -> np.ndarray:
        """The counts, the same for every fold-in user: ``(U, I)`` float32."""
        support = _check_support(support, len(self.counts))
        return np.tile(self.counts, (support.shape[0], 1))  # (U, I)


@dataclass(frozen=True, eq=False)
class ItemMean:
    """Scores every item by its Bayesian-shrunk mean rating, the same for every user.

    ``mean_i = (sum_i + shrinkage * global_mean) / (count_i + shrinkage)``: an item with few
    ratings is pulled toward the global mean rating.

    Attributes:
        means: ``(I,)`` float32 shrunk mean ratings.
        global_mean: Mean of all training ratings.
    """

    means: np.ndarray
    global_mean: float

    @classmethod
    def fit(cls, ratings: np.ndarray, *, shrinkage: float) -> ItemMean:
        """Fit the shrunk item means.

        Args:
            ratings: ``(N_users, I)`` explicit ratings, 0 = unrated.
            shrinkage: Pseudo-ratings at the global mean added to every item, ``>= 0``. With 0,
                an item nobody rated gets the global mean.

        Raises:
            ValueError: If ``shrinkage < 0`` or there is no rating at all.
        """
        ratings = _check_matrix(ratings, "ratings").astype(np.float64)
        if shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
        counts = (ratings != 0).sum(axis=0)  # (I,)
        if counts.sum() == 0:
            raise ValueError("ratings hold no rating (all zero); fit on a non-empty matrix")
        sums = ratings.sum(axis=0)  # (I,)
        global_mean = float(sums.sum() / counts.sum())
        denominator = counts + shrinkage  # (I,)
        safe = np.where(denominator > 0, denominator, 1.0)
        means = np.where(denominator > 0, (sums + shrinkage * global_mean) / safe, global_mean)
        return cls(means=means.astype(np.float32), global_mean=global_mean)

    def score(self, support: np.ndarray) -> np.ndarray:
        """The shrunk means, the same for every fold-in user: ``(U, I)`` float32."""
        support = _check_support(support, len(self.means))
        return np.tile(self.means, (support.shape[0], 1))  # (U, I)


@dataclass(frozen=True, eq=False)
class ItemKNN:
    """Item-based k-nearest neighbours with cosine similarity: ``score = support @ S``.

    Attributes:
        similarity: ``(I, I)`` float32; ``S[i, j]`` is how much an interaction with item ``i``
            recommends item ``j``. The diagonal is 0.
    """

    similarity: np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray, *, neighbours: int | None) -> ItemKNN:
        """Cosine similarity of the item columns of ``train``.

        Args:
            train: ``(N_users, I)`` interaction matrix (implicit weights).
            neighbours: Keep only each item's ``neighbours`` most similar items (per column ``j``
                of ``S``: the items that recommend ``j`` most; ties to the lower index), or
                ``None`` to keep all. Items with no interaction have similarity 0.

        Raises:
            ValueError: If ``neighbours < 1``.
        """
        x = _check_matrix(train, "train").astype(np.float64)  # (N, I)
        if neighbours is not None and neighbours < 1:
            raise ValueError(f"neighbours must be >= 1 or None, got {neighbours}")
        norms = np.sqrt((x * x).sum(axis=0))  # (I,)
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)  # (I,)
        s = (x.T @ x) * inverse[:, None] * inverse[None, :]  # (I, I) cosine
        np.fill_diagonal(s, 0.0)
        n_items = s.shape[0]
        if neighbours is not None and neighbours < n_items:
            keep_rows = top_k(s.T, neighbours)  # (I, k): for column j, its best rows i
            mask = np.zeros_like(s, dtype=bool)  # (I, I)
            mask[keep_rows, np.arange(n_items)[:, None]] = True
            s = np.where(mask, s, 0.0)
        return cls(similarity=s.astype(np.float32))

    def score(self, support: np.ndarray) -> np.ndarray:
        """``support @ S``: ``(U, I)`` float32."""
        support = _check_support(support, self.similarity.shape[0])
        return support @ self.similarity  # (U, I)


@dataclass(frozen=True, eq=False)
class EASE:
    """Embarrassingly shallow autoencoder (Steck 2019): ``score = support @ B``.

    ``B`` minimises ``||X − X B||² + l2 ||B||²`` subject to ``diag(B) = 0``; the closed form is
    ``P = (XᵀX + l2 I)⁻¹``, ``B = −P / diag(P)`` (column-wise) with the diagonal set to 0.

    Attributes:
        B: ``(I, I)`` float32 item-item weights, zero diagonal.
    """

    B: np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray, *, l2: float) -> EASE:
        """Solve the closed form in float64.

        Args:
            train: ``(N_users, I)`` interaction matrix (implicit weights).
            l2: The ridge penalty ``λ``, ``> 0``.

        Raises:
            ValueError: If ``l2 <= 0``.
        """
        x = _check_matrix(train, "train").astype(np.float64)  # (N, I)
        if not l2 > 0:
            raise ValueError(f"l2 must be > 0 (it keeps XᵀX + l2·I invertible), got {l2}")
        gram = x.T @ x  # (I, I)
        gram[np.diag_indices_from(gram)] += l2
        p = np.linalg.inv(gram)  # (I, I)
        b = -p / np.diag(p)[None, :]  # (I, I) column j divided by P_jj
        np.fill_diagonal(b, 0.0)
        return cls(B=b.astype(np.float32))

    @classmethod
    def from_weights(cls, weights: np.ndarray) -> EASE:
        """Rebuild a fitted model from :meth:`weights`.

        Raises:
            ValueError: If ``weights`` is not a square 2-D matrix.
        """
        weights = np.asarray(weights)
        if weights.ndim != 2 or weights.shape[0] != weights.shape[1]:
            raise ValueError(f"EASE weights must be a square (I, I) matrix, got {weights.shape}")
        return cls(B=weights.astype(np.float32))

    def weights(self) -> np.ndarray:
        """``B``, ``(I, I)`` float32, for serialisation (e.g. safetensors)."""
        return self.B

    def score(self, support: np.ndarray) -> np.ndarray:
        """``support @ B``: ``(U, I)`` float32."""
        support = _check_support(support, self.B.shape[0])
        return support @ self.B  # (U, I)


def _check_matrix(matrix: np.ndarray, name: str) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"{name} must be a (users, items) matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name} holds NaN or inf; use 0 for a missing interaction")
    return matrix


def _check_support(support: np.ndarray, n_items: int) -> np.ndarray:
    support = np.asarray(support, dtype=np.float32)
    if support.ndim != 2 or support.shape[1] != n_items:
        raise ValueError(
            f"support must be a (users, {n_items}) matrix over the fitted catalogue, got shape "
            f"{support.shape}"
        )
    return support

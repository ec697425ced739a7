from __future__ import annotations

import numpy as np
import pytest
from metarec.learning.item_models import (
    EASE,
    ItemKNN,
    ItemMean,
    Popularity,
    implicit_weights,
    interaction_matrix,
)


def test_implicit_weights_rule():
    ratings = np.array([1, 2, 3, 3.5, 4, 5])
    np.testing.assert_array_equal(implicit_weights(ratings, scheme="binary"), np.ones(6))
    weighted = implicit_weights(ratings, scheme="weighted")
    np.testing.assert_array_equal(weighted, [0.5, 0.5, 0.5, 0.5, 1.0, 1.0])
    assert weighted.dtype == np.float32
    with pytest.raises(ValueError, match="scheme"):
        implicit_weights(ratings, scheme="graded")  # type: ignore[arg-type]


def test_interaction_matrix_last_duplicate_wins():
    m = interaction_matrix(
        np.array([0, 1, 0]), np.array([2, 0, 2]), np.array([1.0, 2.0, 3.0]), n_users=2, n_items=3
    )
    assert m.dtype == np.float32
    np.testing.assert_array_equal(m, [[0, 0, 3], [2, 0, 0]])


def test_interaction_matrix_rejects_out_of_range_and_ragged_input():
    with pytest.raises(ValueError, match="items indices"):
        interaction_matrix(np.array([0]), np.array([3]), np.array([1.0]), n_users=1, n_items=3)
    with pytest.raises(ValueError, match="one length"):
        interaction_matrix(np.array([0, 1]), np.array([0]), np.array([1.0]), n_users=2, n_items=3)


def test_popularity_counts_training_users_for_every_fold_in_user():
    train = np.array([[1.0, 0.0, 0.5], [1.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
    model = Popularity.fit(train)
    scores = model.score(np.zeros((2, 3), dtype=np.float32))
    np.testing.assert_array_equal(scores, [[2, 1, 2], [2, 1, 2]])
    assert scores.dtype == np.float32
    scores[0, 0] = -np.inf  # the caller masks in place
    assert model.counts[0] == 2


def test_item_mean_shrinks_toward_the_global_mean():
    ratings = np.array([[5.0, 0.0, 3.0], [4.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    model = ItemMean.fit(ratings, shrinkage=2.0)
    # global mean = (5 + 4 + 3 + 2) / 4 = 3.5; shrinkage * mean = 7
    # item 0: (9 + 7) / (2 + 2) = 4; item 1 (unrated): 7 / 2 = 3.5; item 2: (5 + 7) / 4 = 3
    assert model.global_mean == pytest.approx(3.5)
    np.testing.assert_allclose(model.score(np.zeros((1, 3))), [[4.0, 3.5, 3.0]])
    unshrunk = ItemMean.fit(ratings, shrinkage=0.0)
    np.testing.assert_allclose(unshrunk.means, [4.5, 3.5, 2.5])
    with pytest.raises(ValueError, match="shrinkage"):
        ItemMean.fit(ratings, shrinkage=-1.0)


def test_item_knn_cosine_by_hand():
    # columns: item 0 = [1, 1, 0], item 1 = [1, 1, 0], item 2 = [0, 1, 1]
    train = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    model = ItemKNN.fit(train, neighbours=None)
    # cos(0, 1) = 2 / (sqrt2 sqrt2) = 1; cos(0, 2) = cos(1, 2) = 1 / 2; diagonal 0
    expected = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(model.similarity, expected, rtol=1e-6)
    support = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(model.score(support), support @ expected, rtol=1e-6)


def test_item_knn_keeps_top_neighbours_per_item_ties_to_lower_index():
    train = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    model = ItemKNN.fit(train, neighbours=1)
    # column 0 keeps item 1 (1.0); column 1 keeps item 0 (1.0);
    # column 2: items 0 and 1 tie at 0.5 -> item 0 kept
    expected = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(model.similarity, expected, rtol=1e-6)
    np.testing.assert_allclose(model.score(np.array([[1.0, 0.0, 0.0]])), [[0.0, 1.0, 0.5]])
    with pytest.raises(ValueError, match="neighbours"):
        ItemKNN.fit(train, neighbours=0)


def test_ease_matches_the_constrained_least_squares_column_by_column():
    rng = np.random.default_rng(0)
    x = (rng.random((12, 5)) < 0.5).astype(np.float64)
    l2 = 2.0
    model = EASE.fit(x, l2=l2)
    assert model.B.dtype == np.float32
    np.testing.assert_array_equal(np.diag(model.B), np.zeros(5))
    for j in range(5):
        # min ||X_j - X b||^2 + l2 ||b||^2 with b_j = 0: ridge on the other columns
        others = np.delete(np.arange(5), j)
        xo = x[:, others]
        b = np.linalg.solve(xo.T @ xo + l2 * np.eye(4), xo.T @ x[:, j])
        np.testing.assert_allclose(model.B[others, j], b, rtol=1e-5, atol=1e-6)
    support = x[:3].astype(np.float32)
    np.testing.assert_allclose(model.score(support), support @ model.B, rtol=1e-6)


def test_ease_weights_round_trip_and_validation():
    x = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    model = EASE.fit(x, l2=1.0)
    rebuilt = EASE.from_weights(model.weights())
    support = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(rebuilt.score(support), model.score(support))
    with pytest.raises(ValueError, match="square"):
        EASE.from_weights(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="l2"):
        EASE.fit(x, l2=0.0)


def test_score_rejects_support_over_another_catalogue():
    model = Popularity.fit(np.ones((2, 3)))
    with pytest.raises(ValueError, match="support"):
        model.score(np.ones((1, 4)))

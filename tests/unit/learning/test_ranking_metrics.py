from __future__ import annotations

import math

import numpy as np
import pytest
from metarec.learning.ranking_metrics import (
    TOPN_METRICS,
    list_metrics,
    per_user_metrics,
    popularity_percentile,
    top_k,
    topn_metrics,
)

INF = np.inf


def test_top_k_best_first_ties_to_lower_index_minus_inf_last():
    # item:      0    1    2    3    4     5
    scores = np.array([[0.9, 0.1, 0.5, 0.5, -INF, 0.3]])
    # 0 (0.9), then 2 and 3 tie at 0.5 -> 2 first, 5 (0.3), 1 (0.1), 4 (-inf)
    assert top_k(scores, 6).tolist() == [[0, 2, 3, 5, 1, 4]]
    # the tie straddles the cut-off: only the lower index gets in
    assert top_k(scores, 2).tolist() == [[0, 2]]


def test_top_k_fills_with_minus_inf_items_by_lowest_index():
    scores = np.array([[-INF, 2.0, -INF, -INF, 1.0, -INF]])
    # two finite items first, then the -inf items 0 and 2 (lowest indices)
    assert top_k(scores, 4).tolist() == [[1, 4, 0, 2]]
    assert top_k(np.full((1, 3), -INF), 2).tolist() == [[0, 1]]


def test_top_k_matches_a_stable_full_sort_on_tie_heavy_scores():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (50, 40)).astype(float)  # many ties
    scores[rng.random(scores.shape) < 0.3] = -INF
    reference = np.argsort(-scores, axis=1, kind="stable")
    for k in (1, 5, 17, 40):
        np.testing.assert_array_equal(top_k(scores, k), reference[:, :k])


def test_top_k_rejects_bad_k_and_nan():
    with pytest.raises(ValueError, match="k must be"):
        top_k(np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="k must be"):
        top_k(np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[0.0, np.nan]]), 1)


def test_per_user_metrics_by_hand_on_two_users_six_items():
    scores = np.array(
        [
            [0.9, 0.1, 0.5, 0.5, -INF, 0.3],  # ranking 0, 2, 3, 5, 1, 4
            [0.2, 0.2, 0.2, 0.2, 0.2, 0.2],  # all tied: ranking 0, 1, 2, 3, 4, 5
        ]
    )
    relevant = np.zeros((2, 6), dtype=bool)
    relevant[0, [3, 5]] = True  # ranks 3 and 4
    relevant[1, 4] = True  # rank 5
    m = per_user_metrics(scores, relevant)
    assert set(m) == {"recall@20", "ndcg@20", "hit@10", "mrr"}
    # the catalogue (6) is smaller than every cut-off, so everything is "retrieved"
    np.testing.assert_allclose(m["recall@20"], [1.0, 1.0])
    np.testing.assert_allclose(m["hit@10"], [1.0, 1.0])
    # user 0: DCG = 1/log2(3+1) + 1/log2(4+1), IDCG = 1/log2(2) + 1/log2(3)
    # user 1: DCG = 1/log2(5+1), IDCG = 1
    ndcg0 = (1 / math.log2(4) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    np.testing.assert_allclose(m["ndcg@20"], [ndcg0, 1 / math.log2(6)])
    np.testing.assert_allclose(m["mrr"], [1 / 3, 1 / 5])


def test_per_user_metrics_cut_offs_on_thirty_items():
    n_items = 30
    scores = np.tile(-np.arange(n_items, dtype=float), (4, 1))  # item i at rank i + 1
    relevant = np.zeros((4, n_items), dtype=bool)
    relevant[0, [5, 19, 20, 25]] = True  # ranks 6, 20, 21, 26
    relevant[1, :25] = True  # 25 relevant, top 20 all hits
    relevant[2, [10, 29]] = True  # ranks 11 and 30
    relevant[3, 25] = True  # rank 26: only MRR sees it
    m = per_user_metrics(scores, relevant)
    # user 0: 2 hits in the top 20 / min(20, 4) ; user 1: 20 / min(20, 25)
    # user 2: 1 / min(20, 2) ; user 3: 0 / 1
    np.testing.assert_allclose(m["recall@20"], [2 / 4, 1.0, 1 / 2, 0.0])
    idcg4 = sum(1 / math.log2(r + 1) for r in range(1, 5))
    idcg2 = 1 + 1 / math.log2(3)
    np.testing.assert_allclose(
        m["ndcg@20"],
        [(1 / math.log2(7) + 1 / math.log2(21)) / idcg4, 1.0, (1 / math.log2(12)) / idcg2, 0.0],
    )
    np.testing.assert_allclose(m["hit@10"], [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(m["mrr"], [1 / 6, 1.0, 1 / 11, 1 / 26])


def test_mrr_uses_full_ranking_with_ties_and_excluded_relevant_items():
    scores = np.array(
        [
            [-INF, 1.0, 2.0, -INF],  # ranking 2, 1, 0, 3
            [3.0, 1.0, 1.0, 1.0],  # ranking 0, 1, 2, 3
        ]
    )
    relevant = np.array([[False, False, False, True], [False, False, True, True]])
    m = per_user_metrics(scores, relevant)
    # user 0: relevant item 3 is excluded (-inf) and after the other -inf item 0 -> rank 4
    # user 1: items 2 and 3 tie with item 1; item 2 is first relevant at rank 3
    np.testing.assert_allclose(m["mrr"], [1 / 4, 1 / 3])


def test_per_user_metrics_rejects_user_without_relevant_item_and_shape_mismatch():
    relevant = np.array([[True, False], [False, False]])
    with pytest.raises(ValueError, match="no relevant item"):
        per_user_metrics(np.zeros((2, 2)), relevant)
    with pytest.raises(ValueError, match="same shape"):
        per_user_metrics(np.zeros((2, 3)), relevant)


def test_personalisation_identical_lists_zero_disjoint_lists_one():
    popularity = np.ones(10)
    same = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    disjoint = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    assert list_metrics(same, n_items=10, popularity=popularity)["personalisation"] == 0.0
    assert list_metrics(disjoint, n_items=10, popularity=popularity)["personalisation"] == 1.0


def test_personalisation_partial_overlap_and_coverage():
    lists = np.array([[0, 1, 2], [1, 2, 3], [4, 5, 6]])
    m = list_metrics(lists, n_items=10, popularity=np.ones(10))
    # Jaccard: users 0-1 share {1, 2} of {0, 1, 2, 3} = 0.5; the other pairs 0
    # mean over 3 pairs = 1/6 -> personalisation 5/6
    assert m["personalisation"] == pytest.approx(5 / 6)
    # distinct items {0, ..., 6} = 7 of 10
    assert m["coverage"] == pytest.approx(0.7)


def test_personalisation_of_a_single_user_is_one():
    m = list_metrics(np.array([[0, 1]]), n_items=3, popularity=np.ones(3))
    assert m["personalisation"] == 1.0
    assert m["coverage"] == pytest.approx(2 / 3)


def test_popularity_percentile_ties_share_average_rank():
    counts = np.array([5, 1, 3, 3, 0])
    # ascending ranks: item 4 -> 1, item 1 -> 2, items 2, 3 -> (3 + 4) / 2 = 3.5, item 0 -> 5
    # scaled (rank - 1) / (5 - 1)
    np.testing.assert_allclose(popularity_percentile(counts), [1.0, 0.25, 0.625, 0.625, 0.0])
    m = list_metrics(np.array([[0, 2], [1, 3]]), n_items=5, popularity=counts)
    # mean of 1.0, 0.625, 0.25, 0.625
    assert m["popularity"] == pytest.approx(2.5 / 4)


def test_list_metrics_rejects_out_of_range_items_and_wrong_popularity():
    with pytest.raises(ValueError, match="outside"):
        list_metrics(np.array([[0, 5]]), n_items=5, popularity=np.ones(5))
    with pytest.raises(ValueError, match="popularity"):
        list_metrics(np.array([[0, 1]]), n_items=5, popularity=np.ones(4))


def test_topn_metrics_averages_users_and_keeps_the_declared_order():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(8, 30))
    scores[:, :3] = -INF  # an excluded support
    relevant = rng.random((8, 30)) < 0.2
    relevant[:, 10] = True
    popularity = rng.integers(0, 50, 30)
    m = topn_metrics(scores, relevant, popularity=popularity)
    assert tuple(m) == TOPN_METRICS
    per_user = per_user_metrics(scores, relevant)
    for name, values in per_user.items():
        assert m[name] == pytest.approx(values.mean())
    lists = list_metrics(top_k(scores, 10), n_items=30, popularity=popularity)
    for name, value in lists.items():
        assert m[name] == pytest.approx(value)
    assert not set(top_k(scores, 10).ravel()) & {0, 1, 2}

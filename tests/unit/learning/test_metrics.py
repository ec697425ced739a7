from __future__ import annotations

import math

import numpy as np
import pytest
from metarec.learning.metrics import METRIC_NAMES, evaluate_predictions, ndcg_at_k


def test_ndcg_perfect_and_reversed_ranking():
    truth = np.array([5, 3, 1])
    assert ndcg_at_k(np.array([3.0, 2.0, 1.0]), truth, 3) == pytest.approx(1.0)
    reversed_score = ndcg_at_k(np.array([1.0, 2.0, 3.0]), truth, 3)
    gains = [2**1 - 1, 2**3 - 1, 2**5 - 1]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(gains, reverse=True)))
    assert reversed_score == pytest.approx(dcg / idcg)


def test_ndcg_at_1_uses_exponential_gain():
    # top-ranked item has rating 4 while the best is 5: (2^4 - 1) / (2^5 - 1)
    assert ndcg_at_k(np.array([9.0, 1.0]), np.array([4, 5]), 1) == pytest.approx(15 / 31)


def test_ndcg_ties_keep_query_order():
    assert ndcg_at_k(np.zeros(2), np.array([1, 5]), 1) == pytest.approx(1 / 31)


def test_evaluate_predictions_pools_errors_and_averages_ndcg():
    preds = [np.array([3.0, 4.0]), np.array([2.0])]
    truths = [np.array([4.0, 4.0]), np.array([4.0])]
    m = evaluate_predictions(preds, truths)
    assert set(m) == set(METRIC_NAMES)
    assert m["mae"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 3))


def test_evaluate_predictions_rejects_mismatch():
    with pytest.raises(ValueError):
        evaluate_predictions([np.ones(2)], [])

from __future__ import annotations

import numpy as np
import pytest
from metarec.learning.baselines import BiasModel


def test_item_bias_is_regularised_and_unknown_items_get_zero():
    bias = BiasModel.fit(np.array([1, 1, 2]), np.array([5.0, 5.0, 2.0]), item_reg=1.0)
    assert bias.mean == pytest.approx(4.0)
    # item 1: residuals (1 + 1) / (2 + 1); item 2: -2 / (1 + 1)
    np.testing.assert_allclose(bias.item(np.array([1, 2, 99])), [4 + 2 / 3, 3.0, 4.0])
    np.testing.assert_allclose(bias.global_mean(np.array([1, 2])), [4.0, 4.0])


def test_user_bias_comes_from_the_support_set():
    bias = BiasModel.fit(np.array([1, 2]), np.array([3.0, 3.0]), item_reg=0.0, user_reg=1.0)
    pred = bias.user_item(np.array([1, 2, 1]), np.array([5.0, 5.0, 5.0]), np.array([2]))
    # three residuals of +2, shrunk by (3 + 1)
    np.testing.assert_allclose(pred, [3.0 + 6 / 4])
    # an empty support set means no user bias
    np.testing.assert_allclose(bias.user_item(np.array([]), np.array([]), np.array([2])), [3.0])

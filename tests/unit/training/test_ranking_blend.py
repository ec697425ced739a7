"""The served ranker's blend of the meta-learned ranker and the EASE prior."""

from __future__ import annotations

import numpy as np
from metarec.training.ranking import blend
from metarec.training.ranking_eval import choose_blend


def test_blend_weights_the_two_standardised_scores():
    meta = np.array([[1.0, -1.0, 0.0]])
    prior = np.array([[-1.0, 1.0, 0.0]])
    np.testing.assert_allclose(blend(meta, prior, weight=0.25), [[0.5, -0.5, 0.0]])
    np.testing.assert_allclose(blend(meta, prior, weight=0.0), meta)


def test_without_validation_users_the_meta_ranker_is_served_alone():
    # A tiny data set can leave no validation task: no weight is chosen on nothing.
    assert choose_blend(None, 3, None, None, []) == 0.0  # type: ignore[arg-type]

"""What the meta-training loops share: the best weights on validation and seeded episodes."""

from __future__ import annotations

import math

import numpy as np
import torch
from metarec.training.meta_loop import BestOnValidation, EpisodeSampler, weights_copy
from metarec.training.scenarios import TaskSource


def _model(value: float) -> torch.nn.Linear:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def test_lower_is_better_counts_validations_without_improvement_and_restores_the_best():
    model = _model(1.0)
    keeper = BestOnValidation(min_delta=0.1, patience=2)
    assert keeper.observe(1, 0.9, model)
    model.weight.data.fill_(2.0)
    assert not keeper.observe(2, 0.85, model)  # better, but not by more than min_delta
    assert (keeper.best, keeper.best_step, keeper.bad_evals) == (0.9, 1, 1)
    assert not keeper.exhausted
    assert not keeper.observe(3, 1.5, model)
    assert keeper.exhausted
    keeper.restore(model)
    assert model.weight.item() == 1.0


def test_higher_is_better_keeps_the_highest_score_and_never_stops_without_patience():
    model = _model(0.0)
    keeper = BestOnValidation(higher_is_better=True, best=-math.inf)
    for step, score in enumerate([0.1, 0.3, 0.2, 0.2, 0.2], start=1):
        model.weight.data.fill_(float(step))
        keeper.observe(step, score, model)
    assert (keeper.best, keeper.best_step, keeper.bad_evals) == (0.3, 2, 3)
    assert not keeper.exhausted
    keeper.restore(model)
    assert model.weight.item() == 2.0


def test_the_copy_of_the_weights_does_not_follow_the_model():
    model = _model(1.0)
    copy = weights_copy(model, to_cpu=True)
    model.weight.data.fill_(5.0)
    assert copy["weight"].item() == 1.0


def test_restore_without_kept_weights_leaves_the_model_alone():
    model = _model(3.0)
    BestOnValidation().restore(model)
    assert model.weight.item() == 3.0


def _source() -> TaskSource:
    counts = {1: 20, 2: 5, 3: 30, 4: 15}  # user 2 has too few ratings for a 10-rating query
    user_ids = np.concatenate([np.full(n, u) for u, n in counts.items()])
    n = len(user_ids)
    return TaskSource(
        x=np.arange(n, dtype=np.int64).reshape(n, 1),
        y=np.linspace(1.0, 5.0, n),
        user_ids=user_ids,
        item_ids=np.arange(n),
        new_item=np.zeros(n, bool),
    )


def _sampler(source: TaskSource, **options: int) -> EpisodeSampler:
    settings = {
        "batch_size": 2,
        "query_size": 10,
        "support_min": 3,
        "support_max": 8,
        "max_ratings": 100,
        "seed": 0,
        "stream": 3,
    }
    return EpisodeSampler.of_users(source, [1, 2, 3, 4], **{**settings, **options})


def test_the_pool_holds_the_users_with_more_ratings_than_the_query():
    assert sorted(_sampler(_source()).pool.tolist()) == [1, 3, 4]
    assert len(_sampler(_source(), query_size=25)) == 1


def test_a_step_draws_the_same_batch_every_time_and_streams_differ():
    source = _source()
    first = _sampler(source).tasks(7)
    again = _sampler(source).tasks(7)
    assert len(first) == 2
    assert [t.user_id for t in first] == [t.user_id for t in again]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.support_x, b.support_x)
        np.testing.assert_array_equal(a.query_x, b.query_x)
        assert 3 <= len(a.support_y) <= 8 and len(a.query_y) == 10
    draws = {tuple(t.user_id for t in _sampler(source, stream=s).tasks(7)) for s in range(6)}
    assert len(draws) > 1

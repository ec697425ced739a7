"""Served predictions of a model with an outer-loop item bias equal offline evaluation's."""

import numpy as np
import pytest
import torch
from metarec.learning.algorithms import InnerLoop
from metarec.learning.model import MeLU, ModelConfig
from metarec.learning.tasks import Task
from metarec.serving.adapter import AdaptationJob, BatchedAdapter
from metarec.serving.features import ItemMatrix
from metarec.training.methods import AdaptedModel, adapted_predictions

N_ITEMS = 12


@pytest.fixture
def setup():
    torch.manual_seed(0)
    config = ModelConfig(
        field_names=("gender", "item_id"),
        field_sizes=(3, N_ITEMS + 1),
        n_genres=0,
        max_genres=0,
        embedding_dim=4,
        hidden=(8,),
        bias_fields=("item_id",),
    )
    model = MeLU(config)
    with torch.no_grad():  # a learnt item bias: far from zero, different per item
        model.biases["item_id"].weight[1:] = torch.linspace(-1.5, 1.5, N_ITEMS)[:, None]
    codes = np.array([[0, i] for i in range(1, N_ITEMS + 1)], dtype=np.int64)  # user column 0
    items = ItemMatrix(
        item_ids=np.arange(101, 101 + N_ITEMS),
        codes=codes,
        index={101 + i: i for i in range(N_ITEMS)},
        signature=("test",),
    )
    return AdaptedModel(model, InnerLoop(steps=3, lr=0.05)), items


def test_item_bias_is_taken_out_of_the_support_and_added_back(setup):
    adapted, items = setup
    rng = np.random.default_rng(0)
    jobs, tasks = [], []
    for user, gender in ((1, 1), (2, 2), (3, 1)):
        support = rng.choice(N_ITEMS, size=4 + user, replace=False)
        query = rng.choice(N_ITEMS, size=5, replace=False)
        y = rng.integers(1, 6, size=len(support)).astype(np.float32)
        user_codes = np.array([gender, 0])
        jobs.append(AdaptationJob(items, user_codes, support, y, query))
        compose = lambda rows, g=gender: items.codes[rows] + np.array([g, 0])  # noqa: E731
        tasks.append(
            Task(
                user_id=user,
                support_x=compose(support),
                support_y=y,
                support_items=items.item_ids[support],
                query_x=compose(query),
                query_y=np.zeros(len(query), np.float32),
                query_items=items.item_ids[query],
            )
        )
    served = [np.clip(p, 1.0, 5.0) for p in BatchedAdapter(adapted)(jobs)]
    offline = adapted_predictions(adapted, tasks, device=torch.device("cpu"))
    for online, expected in zip(served, offline, strict=True):
        np.testing.assert_allclose(online, expected, atol=1e-5, rtol=0)
    # The bias really matters here: without it the predictions would differ.
    spread = np.ptp(np.concatenate(offline))
    assert spread > 0.5

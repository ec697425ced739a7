"""The adapter's serving-side scoring equals offline evaluation for every model shape.

The adapter applies the adapted first layer to the cached item embeddings and to the user's
embedding separately, and scores either the whole catalogue (large query sets) or gathered rows
(small ones). Both paths, deeper and shallower MLPs, Meta-SGD rates, genres, an item bias and a
batch spanning two item matrices must give offline evaluation's predictions.
"""

import numpy as np
import pytest
import torch
from metarec.learning.algorithms import InnerLoop
from metarec.learning.model import MeLU, ModelConfig
from metarec.learning.tasks import Task
from metarec.serving.adapter import AdaptationJob, BatchedAdapter
from metarec.serving.features import ItemMatrix
from metarec.training.methods import AdaptedModel, adapted_predictions

N_ITEMS = 40
MAX_GENRES = 2
TOLERANCE = 1e-5


def _model(hidden: tuple[int, ...], meta_sgd: bool) -> MeLU:
    torch.manual_seed(0)
    config = ModelConfig(
        field_names=("gender", "item_id"),
        field_sizes=(3, N_ITEMS + 1),
        bags=((5, MAX_GENRES),),
        embedding_dim=4,
        hidden=hidden,
        meta_sgd=meta_sgd,
        inner_lr_init=0.05,
        bias_fields=("item_id",),
    )
    model = MeLU(config)
    with torch.no_grad():  # a learnt item bias, different per item
        model.biases["item_id"].weight[1:] = torch.linspace(-1.0, 1.0, N_ITEMS)[:, None]
    return model


def _items(seed: int) -> ItemMatrix:
    rng = np.random.default_rng(seed)
    genres = rng.integers(0, 5, size=(N_ITEMS, MAX_GENRES))  # some rows without genres
    codes = np.column_stack([np.zeros(N_ITEMS), np.arange(1, N_ITEMS + 1), genres]).astype(
        np.float32
    )  # encoded rows, user column 0
    return ItemMatrix(
        item_ids=np.arange(101, 101 + N_ITEMS),
        codes=codes,
        index={101 + i: i for i in range(N_ITEMS)},
        signature=("test", seed),
    )


def _jobs_and_tasks(
    matrices: list[ItemMatrix], query_size: int
) -> tuple[list[AdaptationJob], list[Task]]:
    rng = np.random.default_rng(1)
    jobs, tasks = [], []
    for user in range(6):
        items = matrices[user % len(matrices)]
        gender = 1 + user % 2
        support = rng.choice(N_ITEMS, size=3 + user, replace=False)
        query = rng.choice(N_ITEMS, size=query_size, replace=False)
        y = rng.integers(1, 6, size=len(support)).astype(np.float32)
        user_codes = np.zeros(items.codes.shape[1], dtype=np.float32)
        user_codes[0] = gender
        jobs.append(AdaptationJob(items, user_codes, support, y, query))
        compose = lambda rows, m=items, u=user_codes: m.codes[rows] + u  # noqa: E731
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
    return jobs, tasks


@pytest.mark.parametrize("hidden", [(), (8,), (8, 6)])
@pytest.mark.parametrize("meta_sgd", [False, True])
@pytest.mark.parametrize("query_size", [5, N_ITEMS - 5])  # gathered rows; whole catalogue
def test_served_predictions_equal_offline(hidden, meta_sgd, query_size):
    model = _model(hidden, meta_sgd)
    adapted = AdaptedModel(model, InnerLoop(steps=3, lr=0.05), use_meta_sgd=meta_sgd)
    jobs, tasks = _jobs_and_tasks([_items(0), _items(1)], query_size)
    served = [np.clip(p, 1.0, 5.0) for p in BatchedAdapter(adapted)(jobs)]
    offline = adapted_predictions(adapted, tasks, device=torch.device("cpu"))
    for job, online, expected in zip(jobs, served, offline, strict=True):
        assert online.shape == (len(job.query_rows),)
        np.testing.assert_allclose(online, expected, atol=TOLERANCE, rtol=0)
    assert np.ptp(np.concatenate(offline)) > 0.1  # not a constant model


@pytest.mark.parametrize("hidden", [(), (8, 6)])
@pytest.mark.parametrize("query_size", [5, N_ITEMS - 5])  # gathered rows; whole catalogue
def test_served_scores_equal_the_module_forward(hidden, query_size):
    """Unadapted (0 steps), the serving scorer gives the model's own forward on composed rows."""
    model = _model(hidden, meta_sgd=False)
    adapted = AdaptedModel(model, InnerLoop(steps=0, lr=0.05))
    jobs, tasks = _jobs_and_tasks([_items(0), _items(1)], query_size)
    served = BatchedAdapter(adapted)(jobs)
    with torch.no_grad():
        forward = [model(torch.from_numpy(task.query_x)).numpy() for task in tasks]
    for online, expected in zip(served, forward, strict=True):
        np.testing.assert_allclose(online, expected, atol=TOLERANCE, rtol=0)
    assert np.ptp(np.concatenate(forward)) > 0.1  # not a constant model


def test_a_job_alone_equals_the_job_in_a_batch():
    adapted = AdaptedModel(_model((8, 6), False), InnerLoop(steps=2, lr=0.05))
    jobs, _ = _jobs_and_tasks([_items(0)], N_ITEMS - 5)
    adapter = BatchedAdapter(adapted)
    batched = adapter(jobs)
    for job, together in zip(jobs, batched, strict=True):
        (alone,) = adapter([job])
        np.testing.assert_allclose(alone, together, atol=TOLERANCE, rtol=0)

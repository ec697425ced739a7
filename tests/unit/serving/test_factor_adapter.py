"""The factor fold-in's serving adapter equals offline evaluation's ``factor_predictions``.

Jobs with different support sizes (none included) and query sizes, spanning two item matrices,
are predicted in one batch; each must equal the job predicted alone and offline evaluation's
prediction on the equivalent task (encoded rows composed from the item codes and the user's
codes), for the closed-form and the gradient-step fold-in, with the neighbourhood correction
and a two-member ensemble.
"""

import numpy as np
import pytest
import torch
from metarec.learning.factor_model import FactorConfig, FactorModel
from metarec.learning.tasks import Task
from metarec.serving.adapter import AdaptationJob
from metarec.serving.factor_adapter import FactorAdapter
from metarec.serving.features import ItemMatrix, compose_rows
from metarec.training.encoding import FeatureEncoder
from metarec.training.factor_training import factor_predictions

N_ITEMS = 40
MAX_GENRES = 2
TOLERANCE = 1e-5
VOCABULARIES = {
    "gender": ["F", "M"],
    "age_bucket": ["18", "25", "35"],
    "occupation": ["a", "b", "c", "d"],
    "user_id": [str(u) for u in range(10)],
    "item_id": [str(i) for i in range(101, 101 + N_ITEMS)],
    "release_year": ["1990", "1995", "2000"],
}
ENCODER = FeatureEncoder(
    field_names=list(VOCABULARIES),
    vocabularies=VOCABULARIES,
    genres=["g1", "g2", "g3", "g4"],
    max_genres=MAX_GENRES,
)
WIDTH = len(VOCABULARIES) + MAX_GENRES
COLUMN = {name: n for n, name in enumerate(VOCABULARIES)}


def _model(inner: str) -> FactorModel:
    config = FactorConfig(
        field_names=tuple(ENCODER.field_names),
        field_sizes=tuple(len(v) + 1 for v in VOCABULARIES.values()),
        n_factors=4,
        inner=inner,
        inner_steps=3,
        inner_lr_init=0.3,
        neighbour_weight=1.0,
        neighbour_count=5.0,
        members=2,
    )
    torch.manual_seed(0)
    model = FactorModel(config)
    with torch.no_grad():  # non-trivial parameters; code 0 still embeds to zeros
        for name, param in model.named_parameters():
            if not name.rsplit(".", 1)[-1].startswith(("log_", "mean")):
                param.normal_(0.0, 0.3)
        for member in (model, *model.extra_members):
            member.item_bias.weight[0].zero_()
            member.item_factors.weight[0].zero_()
            for emb in member.prior_fields:
                emb.weight[0].zero_()
    return model.eval()


def _items(seed: int) -> ItemMatrix:
    rng = np.random.default_rng(seed)
    codes = np.zeros((N_ITEMS, WIDTH), dtype=np.float32)  # encoded rows, user columns 0
    codes[:, COLUMN["item_id"]] = np.arange(1, N_ITEMS + 1)
    codes[:, COLUMN["release_year"]] = rng.integers(1, 4, size=N_ITEMS)
    codes[:, len(VOCABULARIES) :] = rng.integers(0, 5, size=(N_ITEMS, MAX_GENRES))
    return ItemMatrix(
        item_ids=np.arange(101, 101 + N_ITEMS),
        codes=codes,
        index={101 + i: i for i in range(N_ITEMS)},
        signature=("test", seed),
    )


def _jobs_and_tasks() -> tuple[list[AdaptationJob], list[Task]]:
    matrices = [_items(0), _items(1)]
    rng = np.random.default_rng(1)
    jobs, tasks = [], []
    for user, (n_support, n_query) in enumerate([(0, 3), (1, 7), (3, 1), (6, N_ITEMS), (12, 5)]):
        items = matrices[user % 2]
        support = rng.choice(N_ITEMS, size=n_support, replace=False).astype(np.int64)
        query = rng.choice(N_ITEMS, size=n_query, replace=False).astype(np.int64)
        y = rng.integers(1, 6, size=n_support).astype(np.float32)
        user_codes = np.zeros(WIDTH, dtype=np.float32)  # an encoded row
        user_codes[COLUMN["gender"]] = 1 + user % 2
        user_codes[COLUMN["age_bucket"]] = 1 + user % 3
        user_codes[COLUMN["occupation"]] = 1 + user % 4
        user_codes[COLUMN["user_id"]] = 1 + user
        jobs.append(AdaptationJob(items, user_codes, support, y, query))
        tasks.append(
            Task(
                user_id=user,
                support_x=compose_rows(ENCODER, user_codes, items.codes[support]),
                support_y=y,
                support_items=items.item_ids[support],
                query_x=compose_rows(ENCODER, user_codes, items.codes[query]),
                query_y=np.zeros(n_query, np.float32),
                query_items=items.item_ids[query],
            )
        )
    return jobs, tasks


@pytest.mark.parametrize("inner", ["map", "sgd"])
def test_batched_equals_one_at_a_time_and_offline(inner: str):
    model = _model(inner)
    adapter = FactorAdapter(model, ENCODER)
    jobs, tasks = _jobs_and_tasks()
    batched = adapter(jobs)
    alone = [adapter([job])[0] for job in jobs]
    offline = factor_predictions(model, tasks, device="cpu")
    assert [len(p) for p in batched] == [len(j.query_rows) for j in jobs]
    for b, a, o in zip(batched, alone, offline, strict=True):
        np.testing.assert_allclose(b, a, atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(np.clip(b, 1.0, 5.0), o, atol=TOLERANCE, rtol=0)
    spread = np.concatenate(batched)
    assert spread.std() > 0.1  # the comparison is not between constants
    # The user's attributes move the prediction (read off the composed query rows).
    anonymous = [
        AdaptationJob(
            j.items, np.zeros_like(j.user_codes), j.support_rows, j.support_y, j.query_rows
        )
        for j in jobs
    ]
    assert not np.allclose(adapter(anonymous)[0], batched[0])


def test_empty_query_and_steps():
    jobs, _ = _jobs_and_tasks()
    adapter = FactorAdapter(_model("map"), ENCODER)
    empty = AdaptationJob(
        jobs[1].items,
        jobs[1].user_codes,
        jobs[1].support_rows,
        jobs[1].support_y,
        np.zeros(0, np.int64),
    )
    out = adapter([empty, jobs[2]])
    assert out[0].shape == (0,)
    np.testing.assert_allclose(out[1], adapter([jobs[2]])[0], atol=TOLERANCE, rtol=0)
    assert adapter([]) == []
    assert adapter.steps == 1
    assert FactorAdapter(_model("sgd"), ENCODER).steps == 3

"""Small random models and tasks for the learning tests (no data files needed)."""

from __future__ import annotations

import numpy as np
import torch
from metarec.learning.model import MeLU, ModelConfig
from metarec.learning.tasks import Task

CONFIG = ModelConfig(
    field_names=("gender", "age_bucket", "occupation", "item_id"),
    field_sizes=(3, 8, 22, 40),
    bags=((19, 3),),
    embedding_dim=8,
    hidden=(16, 16),
    output_bias=3.5,
)


def make_model(seed: int = 0, *, dtype: torch.dtype = torch.float64, **changes: object) -> MeLU:
    torch.manual_seed(seed)
    config = ModelConfig.from_dict({**CONFIG.to_dict(), **changes}) if changes else CONFIG
    return MeLU(config).to(dtype)


def random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    cols = [rng.integers(1, size, n) for size in CONFIG.field_sizes]
    genres = rng.integers(0, CONFIG.bags[0][0], (n, CONFIG.bags[0][1]))
    genres[:, 0] = rng.integers(1, CONFIG.bags[0][0], n)  # every item has a genre
    return np.concatenate([np.stack(cols, 1), genres], 1).astype(np.int64)


def random_tasks(
    seed: int, n_tasks: int, *, support: tuple[int, int] = (2, 12), query: int = 6
) -> list[Task]:
    rng = np.random.default_rng(seed)
    tasks = []
    for user in range(n_tasks):
        s = int(rng.integers(support[0], support[1] + 1))
        tasks.append(
            Task(
                user_id=user,
                support_x=random_rows(rng, s),
                support_y=rng.integers(1, 6, s).astype(np.float32),
                support_items=rng.integers(1, 40, s),
                query_x=random_rows(rng, query),
                query_y=rng.integers(1, 6, query).astype(np.float32),
                query_items=rng.integers(1, 40, query),
            )
        )
    return tasks

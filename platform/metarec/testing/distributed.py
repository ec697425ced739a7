"""Local multi-process runs of distributed meta-training, for tests and benchmarks.

:func:`run_ranks` starts ``world_size`` processes on this machine with the environment
``torchrun`` would give them (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` =
127.0.0.1 and a free ``MASTER_PORT``) and runs a function in each; the function joins the group
through :func:`metarec.training.distributed.process_group` as ``metarec train`` does.

The rest is a tiny synthetic training problem that every process rebuilds identically
(:func:`tiny_data`), and the jobs the distributed-training tests run in the ranks
(:func:`gradient_job`, :func:`training_job`). Functions run in the ranks live here, in an
importable module, because ``torch.multiprocessing.spawn`` pickles them by name.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from metarec.learning.algorithms import Algorithm, InnerLoop, meta_loss, reptile_gradients
from metarec.learning.tasks import Task, collate
from metarec.training.checkpoint import Checkpointing
from metarec.training.config import TrainingConfig
from metarec.training.distributed import CPU, Ranks, process_group
from metarec.training.preparation import PreparedData, config_split, prepare
from metarec.training.progress import ProgressEvent
from metarec.training.rating_training import build_models, episode_sampler, train_rating_models

TINY: dict[str, Any] = {
    "embedding_dim": 8,
    "hidden": [16, 16],
    "max_steps": 12,
    "meta_batch_size": 7,  # uneven over 2 processes: 3 + 4 tasks
    "inner_steps": 2,
    "eval_every": 4,
    "patience": 10,
    "checkpoint_every": 5,
    "global_epochs": 1,
    "factor_model": False,
    "ranker": False,
    "device": "cpu",
    "min_users_per_value": 2,
}

EARLY_STOP: dict[str, Any] = {"eval_every": 2, "patience": 1}  # validates 6 times, may stop


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(rank: int, world_size: int, port: int, fn: Callable[..., None], args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    fn(*args)


def run_ranks(fn: Callable[..., None], world_size: int, *args: Any) -> None:
    """Run ``fn(*args)`` in ``world_size`` local processes, each with torchrun's environment.

    Raises:
        torch.multiprocessing.ProcessRaisedException: A rank raised (the others are stopped).
    """
    torch.multiprocessing.spawn(
        _rank_main, args=(world_size, free_port(), fn, args), nprocs=world_size, join=True
    )


def tiny_frame(n_users: int = 40, per_user: int = 30, seed: int = 0) -> pd.DataFrame:
    """A seeded training-set frame (MovieLens columns) of ``n_users`` × ``per_user`` ratings."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(1, 101), per_user, replace=False):
            rows.append(
                {
                    "user_id": u,
                    "item_id": int(i),
                    "rating": int(rng.integers(1, 6)),
                    "gender": "MF"[u % 2],
                    "age_bucket": ["18-24", "25-34", "35-44"][u % 3],
                    "occupation": ["student", "writer", "engineer"][u % 3],
                    "zip_prefix": f"{u % 7:03d}",
                    "release_year": 1950 + int(i) // 2,
                    "genres": "Comedy|Drama" if i % 2 else "Action",
                }
            )
    df = pd.DataFrame(rows)
    df["release_year"] = df["release_year"].astype("Int64")
    return df


def tiny_data(**overrides: Any) -> tuple[TrainingConfig, PreparedData]:
    """The :data:`TINY` config (with ``overrides``) and its prepared synthetic data."""
    config = TrainingConfig.build({**TINY, **overrides})
    df = tiny_frame()
    return config, prepare(df, split=config_split(df, config), encoder=None, config=config)


def ragged_batch(data: PreparedData, config: TrainingConfig) -> list[Task]:
    """Step 0's meta-batch with query sets cut to different lengths (uneven means)."""
    tasks = episode_sampler(data, config).tasks(0)
    return [
        replace(t, query_x=t.query_x[: 2 + i], query_y=t.query_y[: 2 + i])
        for i, t in enumerate(tasks)
    ]


def meta_gradients(
    data: PreparedData, config: TrainingConfig, ranks: Ranks
) -> dict[str, torch.Tensor]:
    """The meta-gradient of :func:`ragged_batch` (this rank's part, all-reduced), by name.

    Also ``loss`` (the meta-batch's) and ``tasks`` (this rank's). A fresh seeded model
    (Reptile: its pseudo-gradients); nothing is stepped.
    """
    _, model = build_models(data, config)
    inner = InnerLoop(steps=config.inner_steps, lr=config.inner_lr)
    batch = collate(ranks.part_of(ragged_batch(data, config)))
    if config.algorithm is Algorithm.REPTILE:
        loss = reptile_gradients(model, batch, inner=inner)
    else:
        loss = meta_loss(model, batch, inner=inner)
        loss.backward()
    sync = ranks.gradient_sync(config.algorithm)
    if sync is not None:
        loss = sync(model, batch, loss.detach())
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return {**grads, "loss": loss.detach().reshape(1), "tasks": torch.tensor([batch.n_tasks])}


class StopTrainingError(Exception):
    """Stands in for the job being killed mid-training."""


def train_weights(
    config: TrainingConfig,
    data: PreparedData,
    *,
    ranks: Ranks,
    checkpoints: Path,
    stop_at: int | None = None,
) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
    """Train the rating model; its final weights (None when stopped) and the steps it ran.

    ``stop_at``: raise :class:`StopTrainingError` from the progress callback at that step (a
    killed job: the last checkpoint stays).
    """
    steps: list[int] = []

    def progress(event: ProgressEvent) -> None:
        if event.phase == "meta":
            steps.append(event.step)
            if event.step == stop_at:
                raise StopTrainingError

    keys = Checkpointing(checkpoints, "tiny-run")
    try:
        models = train_rating_models(
            data, config=config, device=CPU, checkpoints=keys, on_progress=progress, ranks=ranks
        )
    except StopTrainingError:
        return None, steps
    return {k: v.detach().clone() for k, v in models.model.state_dict().items()}, steps


def training_job(out: Path, resume_from: Path, algorithms: tuple[str, ...]) -> None:
    """In each rank: meta-gradients, a full run, a run killed at step 8, a resume, early stop.

    Writes ``grad-<algorithm>-rank<r>.safetensors`` (:func:`meta_gradients`),
    ``weights-rank<r>.safetensors`` (the full run's final weights),
    ``resumed-rank<r>.safetensors`` (``resume_from``'s run resumed and finished, with the
    ``steps`` it took) and ``early-rank<r>.safetensors`` (a run with :data:`EARLY_STOP`, with its
    ``steps``). The killed run leaves its checkpoint in ``out / "killed"``.
    """
    ranks = Ranks.from_environment(CPU)
    rank = ranks.rank
    with process_group(ranks):
        for algorithm in algorithms:
            config, data = tiny_data(algorithm=algorithm)
            grads = meta_gradients(data, config, ranks)
            save_file(grads, str(out / f"grad-{algorithm}-rank{rank}.safetensors"))
        config, data = tiny_data()
        weights, _ = train_weights(config, data, ranks=ranks, checkpoints=out / "full")
        train_weights(config, data, ranks=ranks, checkpoints=out / "killed", stop_at=8)
        resumed, steps = train_weights(config, data, ranks=ranks, checkpoints=resume_from)
        early_config, _ = tiny_data(**EARLY_STOP)
        early, early_steps = train_weights(early_config, data, ranks=ranks, checkpoints=out / "e")
    assert weights is not None and resumed is not None and early is not None
    save_file(weights, str(out / f"weights-rank{rank}.safetensors"))
    early["steps"] = torch.tensor(early_steps)
    save_file(early, str(out / f"early-rank{rank}.safetensors"))
    resumed["steps"] = torch.tensor(steps)
    save_file(resumed, str(out / f"resumed-rank{rank}.safetensors"))

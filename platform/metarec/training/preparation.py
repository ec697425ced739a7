"""A training set made ready for training: users split, rows encoded, tasks and baselines.

:func:`prepare` is the one place a training set becomes a :class:`PreparedData`: the trainer,
the evaluation of a saved artifact and the benchmarks all cut their tasks from it, so every
method sees the same users, rows and support/query sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from metarec.learning.baselines import BiasModel
from metarec.training.config import TrainingConfig
from metarec.training.encoding import FeatureEncoder, require_model_inputs
from metarec.training.ranking import RankingData
from metarec.training.scenarios import Split, TaskSource, plan_split


@dataclass
class PreparedData:
    """A training set cut into splits, encoded, with its task source and bias baselines."""

    df: pd.DataFrame
    split: Split
    encoder: FeatureEncoder
    source: TaskSource
    bias: BiasModel
    train_rows: np.ndarray
    mean_rating: float


def config_split(df: pd.DataFrame, config: TrainingConfig, *, seed: int | None = None) -> Split:
    """The user split ``config`` asks for (fractions, folds).

    Args:
        df: The training set.
        config: Fractions, folds and seeds.
        seed: The split seed (default: ``config.split_seed``, else ``config.seed``).
    """
    require_model_inputs(df)
    if seed is None:
        seed = config.seed if config.split_seed is None else config.split_seed
    return plan_split(
        df,
        seed=seed,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        new_item_fraction=config.new_item_fraction,
        n_folds=config.n_folds,
        test_fold=config.test_fold,
    )


def prepare(
    df: pd.DataFrame, *, split: Split, encoder: FeatureEncoder | None, config: TrainingConfig
) -> PreparedData:
    """Encode ``df`` and build the task source, fitting the encoder when none is given.

    Raises:
        ModelInputsError: ``df`` lacks the columns the model reads (see
            :func:`metarec.training.encoding.require_model_inputs`).
    """
    require_model_inputs(df)
    new_item = split.is_new_item(df["release_year"])
    known = df["user_id"].isin(split.train_users).to_numpy() & ~new_item
    if encoder is None:
        encoder = FeatureEncoder.fit(
            df,
            id_rows=df[known],
            use_user_id=config.use_user_id,
            use_item_id=config.use_item_id,
            min_users=config.min_users_per_value,
            min_item_ratings=config.min_item_ratings,
        )
    source = TaskSource(
        x=encoder.encode(df),
        y=df["rating"].to_numpy(np.float32),
        user_ids=df["user_id"].to_numpy(np.int64),
        item_ids=df["item_id"].to_numpy(np.int64),
        new_item=new_item,
    )
    train_rows = np.flatnonzero(known)
    bias = BiasModel.fit(source.item_ids[train_rows], source.y[train_rows])
    return PreparedData(
        df=df,
        split=split,
        encoder=encoder,
        source=source,
        bias=bias,
        train_rows=train_rows,
        mean_rating=float(source.y[train_rows].mean()) if len(train_rows) else 3.5,
    )


def ranking_data(data: PreparedData) -> RankingData:
    """The ranking view of a prepared training set (catalogue, histories, train matrix)."""
    source = data.source
    return RankingData.build(
        encoder=data.encoder,
        codes=source.x,
        user_ids=source.user_ids,
        item_ids=source.item_ids,
        ratings=source.y,
        new_item_rows=data.split.is_new_item(data.df["release_year"]),
        train_users=data.split.train_users,
    )

"""A training set made ready for training: users split, rows encoded, tasks and baselines.

:func:`prepare` is the one place a training set becomes a :class:`PreparedData`: the trainer,
the evaluation of a saved artifact and the benchmarks all cut their tasks from it, so every
method sees the same users, rows and support/query sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from metarec.errors import ModelInputsError
from metarec.features.model_inputs import InputField
from metarec.learning.baselines import BiasModel
from metarec.training.config import TrainingConfig
from metarec.training.encoding import MOVIELENS_INPUTS, FeatureEncoder, with_overrides
from metarec.training.ids import IdCodes
from metarec.training.implicit import is_event_training_set, positive_interactions
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
    ids: IdCodes = field(default_factory=IdCodes)  # text ids → codes (integer ids: none)


def config_split(df: pd.DataFrame, config: TrainingConfig, *, seed: int | None = None) -> Split:
    """The user split ``config`` asks for (fractions, folds).

    Args:
        df: The training set.
        config: Fractions, folds and seeds.
        seed: The split seed (default: ``config.split_seed``, else ``config.seed``).
    """
    require_trainable(df)
    if seed is None:
        seed = config.seed if config.split_seed is None else config.split_seed
    return plan_split(
        IdCodes.fit(df).code(df),
        seed=seed,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        new_item_fraction=config.new_item_fraction,
        n_folds=config.n_folds,
        test_fold=config.test_fold,
    )


def interactions(df: pd.DataFrame) -> pd.DataFrame:
    """The rows the models learn from: ratings as they are, events as positive interactions.

    See :func:`~metarec.training.implicit.positive_interactions`.

    Raises:
        ModelInputsError: An event training set without any positive event.
    """
    return positive_interactions(df) if is_event_training_set(df) else df


def require_trainable(df: pd.DataFrame) -> None:
    """Refuse a training set the trainer cannot learn from, in one line.

    ``df`` is the training set after :func:`interactions` (events carry a ``rating`` then).

    Raises:
        ModelInputsError: It has neither a ``rating`` nor an event ``label``, or an id column
            that is neither integers nor text.
    """
    if "rating" not in df.columns:
        raise ModelInputsError(
            "The training set has neither a rating column nor an event label column.",
            fix="build it with `metarec features training-set` from a snapshot whose schema "
            "declares its label (`label: {kind: rating, …}` or `label: {kind: event, …}`).",
        )
    for column in ("user_id", "item_id"):
        values = df[column]
        if not (
            pd.api.types.is_integer_dtype(values)
            or pd.api.types.is_string_dtype(values)
            or pd.api.types.is_object_dtype(values)
        ):
            raise ModelInputsError(
                f"The training set's {column} is {values.dtype}: ids are integers or text.",
                fix="ingest the ids as integers or text (`metarec data ingest --source table`).",
            )


def prepare(
    df: pd.DataFrame,
    *,
    split: Split,
    encoder: FeatureEncoder | None,
    config: TrainingConfig,
    inputs: Sequence[InputField] | None = None,
) -> PreparedData:
    """Encode ``df`` and build the task source, fitting the encoder when none is given.

    Args:
        df: The training set.
        split: Its user split.
        encoder: A fitted encoder (evaluating a saved model), or None to fit one.
        config: Training settings (encoder options and input overrides).
        inputs: The model's input fields (the training set manifest's); None: MovieLens'.

    Raises:
        ModelInputsError: ``df`` cannot be trained on (see :func:`require_trainable`), or
            lacks an input column.
    """
    require_trainable(df)
    ids = IdCodes.fit(df)
    user_codes = ids.user_codes(df)
    new_item = split.is_new_item(df)
    known = np.isin(user_codes, split.train_users) & ~new_item
    if encoder is None:
        fields = with_overrides(inputs or MOVIELENS_INPUTS, config.inputs)
        encoder = FeatureEncoder.fit(
            df,
            inputs=fields,
            id_rows=df[known],
            use_user_id=config.use_user_id,
            use_item_id=config.use_item_id,
            min_users=config.min_users_per_value,
            min_item_ratings=config.min_item_ratings,
        )
    source = TaskSource(
        x=encoder.encode(df),
        y=df["rating"].to_numpy(np.float32),
        user_ids=user_codes,
        item_ids=ids.item_codes(df),
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
        ids=ids,
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
        new_item_rows=source.new_item,
        train_users=data.split.train_users,
    )

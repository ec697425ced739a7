"""Ranker meta-training tasks: support sets drawn from the history, and cold-start tasks."""

import numpy as np
import pandas as pd
from metarec.features.model_inputs import Encoding, InputField
from metarec.training.encoding import FeatureEncoder
from metarec.training.ranker_training import RankerTraining, _training_batch
from metarec.training.ranking import RankingData


def _data() -> RankingData:
    rng = np.random.default_rng(0)
    rows = [
        {"user_id": u, "item_id": int(i), "rating": int(rng.integers(1, 6)), "country": "FR"}
        for u in range(1, 21)
        for i in rng.choice(np.arange(1, 41), 12, replace=False)
    ]
    df = pd.DataFrame(rows)
    inputs = [InputField(name="country", view="u", side="user", encoding=Encoding.CATEGORICAL)]
    encoder = FeatureEncoder.fit(df, inputs=inputs, use_item_id=True)
    return RankingData.build(
        encoder=encoder,
        codes=encoder.encode(df),
        user_ids=df["user_id"].to_numpy(np.int64),
        item_ids=df["item_id"].to_numpy(np.int64),
        ratings=df["rating"].to_numpy(np.float32),
        new_item_rows=np.zeros(len(df), bool),
        train_users=list(range(1, 21)),
    )


def _support_sizes(share: float) -> np.ndarray:
    data = _data()
    users = np.arange(1, 21)
    config = RankerTraining(cold_start_share=share)
    sizes = []
    for seed in range(10):
        _, weights, _, query_w, _ = _training_batch(
            data, users, np.random.default_rng(seed), config
        )
        sizes += list((weights > 0).sum(1).numpy())
        assert (query_w.sum(1) >= 0).all()
    return np.array(sizes)


def test_cold_start_tasks_have_no_support_and_their_share_follows_the_setting():
    assert (_support_sizes(0.0) >= 3).all()
    assert (_support_sizes(1.0) == 0).all()
    share = (_support_sizes(0.3) == 0).mean()
    assert 0.2 < share < 0.4


def test_support_size_zero_is_one_cell_whatever_the_orders():
    from metarec.training.ranking import Cells

    cells = list(Cells(orders=("time", "random"), ks=(0, 5)))
    assert cells == [("time", 0), ("time", 5), ("random", 5)]

"""The batched adapter returns raw predictions, so ranking never ties at the scale's ends."""

import numpy as np
import torch
from metarec.learning.algorithms import InnerLoop
from metarec.learning.model import MeLU, ModelConfig
from metarec.serving.adapter import AdaptationJob, BatchedAdapter
from metarec.serving.features import ItemMatrix
from metarec.training.methods import AdaptedModel


def _adapter(output_bias: float) -> tuple[BatchedAdapter, ItemMatrix]:
    torch.manual_seed(0)
    config = ModelConfig(
        field_names=("gender", "item"),
        field_sizes=(3, 6),
        embedding_dim=4,
        hidden=(8,),
        output_bias=output_bias,
    )
    model = MeLU(config)
    codes = np.array([[0, i] for i in range(1, 6)], dtype=np.float32)  # 5 items, user column 0
    items = ItemMatrix(
        item_ids=np.arange(1, 6),
        codes=codes,
        index={i: i - 1 for i in range(1, 6)},
        signature=("test",),
    )
    return BatchedAdapter(AdaptedModel(model, InnerLoop(steps=0, lr=0.01))), items


def test_predictions_beyond_the_scale_stay_distinct_for_ranking():
    adapter, items = _adapter(output_bias=20.0)  # every raw prediction far above 5
    job = AdaptationJob(
        items,
        np.array([1, 0], dtype=np.float32),
        np.array([], dtype=np.int64),
        np.array([], dtype=np.float32),
        np.arange(5),
    )
    (scores,) = adapter([job])
    assert (scores > 5).all()
    assert len(set(np.round(scores, 6))) == 5  # clamping would have made them all 5.0

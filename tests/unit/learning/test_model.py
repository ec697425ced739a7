from __future__ import annotations

import torch
from metarec.learning.model import MeLU, ModelConfig

from .helpers import CONFIG, make_model


def test_forward_shapes_and_output_bias():
    model = make_model()
    x = torch.zeros(4, 7, CONFIG.input_width, dtype=torch.int64)
    out = model(x)
    assert out.shape == (4, 7)
    # all-unknown rows embed to zeros, so the prediction is the MLP of zeros
    expected = model.decision(
        torch.zeros(CONFIG.n_fields * CONFIG.embedding_dim, dtype=torch.float64)
    )
    assert torch.allclose(out, expected.expand(4, 7))


def test_genres_are_the_mean_of_genre_embeddings():
    model = make_model()
    x = torch.tensor([[1, 1, 1, 1, 3, 5, 0]])
    h = model.embed(x)
    genre_part = h[0, -CONFIG.embedding_dim :]
    expected = (model.bags[0].weight[3] + model.bags[0].weight[5]) / 2
    assert torch.allclose(genre_part, expected)


def test_only_decision_params_are_adapted():
    model = make_model()
    names = set(model.decision_params())
    assert names == {
        n[len("decision.") :] for n, _ in model.named_parameters() if n.startswith("decision.")
    }
    assert not any("fields" in n or "genres" in n for n in names)


def test_config_round_trip_rebuilds_the_same_architecture():
    config = ModelConfig.from_dict(CONFIG.to_dict())
    assert config == CONFIG
    a, b = MeLU(config), MeLU(CONFIG)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


def test_meta_sgd_rates_cover_every_decision_param():
    model = make_model(meta_sgd=True, inner_lr_init=0.02)
    rates = model.inner_lr()
    assert rates is not None
    assert set(rates) == set(model.decision_params())
    assert all(torch.allclose(r, torch.full_like(r, 0.02)) for r in rates.values())


def test_item_bias_is_an_outer_loop_offset():
    from metarec.learning.adaptation import adapt, predict
    from metarec.learning.algorithms import InnerLoop, meta_loss
    from metarec.learning.tasks import collate

    from .helpers import random_tasks

    model = make_model(bias_fields=("item_id",))
    with torch.no_grad():
        model.biases["item_id"].weight.normal_()
    batch = collate(random_tasks(0, 3))
    unadapted = adapt(
        model, None, batch.support_x, batch.support_y, batch.support_mask, steps=0, lr=0.1
    )
    torch.testing.assert_close(predict(model, unadapted, batch.query_x), model(batch.query_x))
    item_col = CONFIG.field_names.index("item_id")
    offset = model.offset(batch.query_x)
    torch.testing.assert_close(
        offset, model.biases["item_id"].weight[batch.query_x[..., item_col].long(), 0]
    )
    assert "biases.item_id.weight" not in {f"decision.{k}" for k in model.decision_params()}
    meta_loss(model, batch, inner=InnerLoop(steps=2, lr=0.05)).backward()
    assert model.biases["item_id"].weight.grad.abs().sum() > 0

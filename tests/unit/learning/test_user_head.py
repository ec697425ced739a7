"""The ``user`` head: only a shrunk user offset and a user vector adapt per task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metarec.learning.adaptation import adapt, masked_mse, predict
from metarec.learning.algorithms import Algorithm, InnerLoop, meta_loss, meta_step
from metarec.learning.model import MeLU, ModelConfig
from metarec.learning.tasks import collate

from .helpers import CONFIG, make_model, random_tasks

TOL = {"rtol": 1e-9, "atol": 1e-10}


def user_model(seed: int = 0, **changes: object) -> MeLU:
    model = make_model(seed, head="user", bias_fields=("item_id",), **changes)
    with torch.no_grad():
        model.biases["item_id"].weight.normal_(std=0.3)
        model.biases["item_id"].weight[0] = 0.0
        model.decision.proj.weight.normal_(std=0.2)
    return model


def double(batch):
    return type(batch)(
        **{k: (v.double() if v.is_floating_point() else v) for k, v in batch.__dict__.items()}
    )


def loop_adapt(model, task, *, steps, lr, create_graph):
    """Reference: one task at a time with torch.autograd.grad and the head's own loss."""
    start = model.decision_params()
    params = dict(start)
    h = model.embed(torch.as_tensor(task.support_x))
    y = torch.as_tensor(task.support_y, dtype=torch.float64)
    mask = torch.ones_like(y)
    for _ in range(steps):
        pred = torch.func.functional_call(model.decision, params, (h,))
        loss = model.decision.support_loss(pred, y, mask, params, start)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {k: p - lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
    return params


def test_only_the_user_offset_and_vector_adapt():
    model = user_model()
    assert set(model.decision_params()) == {"user_offset", "user_vec"}
    assert model.decision.user_vec.shape == (CONFIG.hidden[-1],)
    regression = {id(p) for p in model.regression_parameters()}
    for name, p in model.named_parameters():
        outer_only = name.startswith(("decision.user_", "decision.log_prior", "decision.proj"))
        assert (id(p) in regression) is not outer_only, name


def test_item_bias_is_an_embedding_column_and_serving_sums_still_compose():
    model = user_model()
    rows = torch.as_tensor(random_tasks(0, 1)[0].support_x)  # (S, W)
    h = model.embed(rows)  # (S, D + 1)
    assert h.shape[-1] == model.config.embedded_width == CONFIG.n_fields * 8 + 1
    item = CONFIG.field_names.index("item_id")
    torch.testing.assert_close(h[:, -1], model.biases["item_id"].weight[rows[:, item], 0])
    assert torch.all(model.offset(rows) == 0)
    user_cols, item_rows = rows.clone(), rows.clone()
    user_cols[:, 3:] = 0  # only the user attributes
    item_rows[:, :3] = 0  # only the item's fields
    torch.testing.assert_close(model.embed(user_cols) + model.embed(item_rows), h)


def test_one_step_of_rate_half_is_the_shrunk_user_bias():
    """With a zero user vector start, step 1 lands on Σ residual / (n + λ) and stays there."""
    model = user_model()
    with torch.no_grad():
        model.decision.proj.weight.zero_()  # the offset alone
    b = double(collate(random_tasks(1, 5)))
    base = model(b.support_x)  # (T, S) the prediction before adaptation
    residual = ((b.support_y - base) * b.support_mask).sum(1)
    prior = model.decision.log_prior.exp()[0].detach()  # λ_offset = 3 (float32 round trip)
    assert prior.item() == pytest.approx(3.0)
    expected = residual / (b.support_mask.sum(1) + prior)
    for steps in (1, 4):
        fast = adapt(model, None, b.support_x, b.support_y, b.support_mask, steps=steps, lr=0.5)
        torch.testing.assert_close(fast["user_offset"][:, 0], expected, **TOL)


def test_batched_adaptation_matches_per_task_loop():
    model = user_model()
    tasks = random_tasks(2, 6)
    b = double(collate(tasks))
    fast = adapt(model, None, b.support_x, b.support_y, b.support_mask, steps=3, lr=0.3)
    for i, task in enumerate(tasks):
        ref = loop_adapt(model, task, steps=3, lr=0.3, create_graph=False)
        for name, value in ref.items():
            torch.testing.assert_close(fast[name][i], value, **TOL)


@pytest.mark.parametrize("algorithm", [Algorithm.MAML, Algorithm.FOMAML])
def test_meta_gradient_matches_per_task_loop(algorithm):
    tasks = random_tasks(3, 5)
    inner = InnerLoop(steps=2, lr=0.3)
    batched = user_model()
    meta_loss(
        batched, double(collate(tasks)), inner=inner, first_order=algorithm is Algorithm.FOMAML
    ).backward()
    looped = user_model()
    total = sum(len(t.query_y) for t in tasks)
    for task in tasks:
        fast = loop_adapt(looped, task, steps=2, lr=0.3, create_graph=algorithm is Algorithm.MAML)
        if algorithm is Algorithm.FOMAML:
            base = looped.decision_params()
            fast = {k: base[k] + (v - base[k]).detach() for k, v in fast.items()}
        qx = torch.as_tensor(task.query_x)
        qy = torch.as_tensor(task.query_y, dtype=torch.float64)
        pred = torch.func.functional_call(looped.decision, fast, (looped.embed(qx),))
        (((pred - qy) ** 2).sum() / total).backward()
    for (name, a), (_, b) in zip(
        batched.named_parameters(), looped.named_parameters(), strict=True
    ):
        if b.grad is None:
            assert a.grad is None or torch.all(a.grad == 0), name
            continue
        torch.testing.assert_close(a.grad, b.grad, **TOL, msg=name)
    if algorithm is Algorithm.MAML:
        assert batched.decision.log_prior.grad.abs().sum() > 0  # the prior is meta-learnt


def test_padding_contents_change_nothing_exactly():
    model = user_model()
    clean = double(collate(random_tasks(4, 4), pad_to=(20, 8)))
    pad = clean.support_mask == 0
    assert pad.any()
    garbage_x = clean.support_x.clone()
    garbage_x[pad] = torch.randint(1, 3, (int(pad.sum()), garbage_x.shape[-1]))
    garbage_y = clean.support_y.masked_fill(pad, 123.0)
    noisy = type(clean)(**{**clean.__dict__, "support_x": garbage_x, "support_y": garbage_y})
    runs = []
    for b in (clean, noisy):
        fast = adapt(model, None, b.support_x, b.support_y, b.support_mask, steps=3, lr=0.5)
        runs.append((fast, predict(model, fast, b.query_x)))
    for name in runs[0][0]:
        assert torch.equal(runs[0][0][name], runs[1][0][name]), name
    assert torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("algorithm", [Algorithm.MAML, Algorithm.FOMAML, Algorithm.REPTILE])
def test_meta_step_reduces_meta_loss_on_a_fixed_batch(algorithm):
    model = user_model()
    b = double(collate(random_tasks(5, 16)))
    inner = InnerLoop(steps=3, lr=0.5)
    start = meta_loss(model, b, inner=inner).item()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        meta_step(model, optimizer, b, algorithm=algorithm, inner=inner)
    assert meta_loss(model, b, inner=inner).item() < start


def test_adapting_reduces_the_support_loss():
    model = user_model()
    b = double(collate(random_tasks(6, 8)))
    y, m = b.support_y, b.support_mask
    before = adapt(model, None, b.support_x, y, m, steps=0, lr=0.5)
    after = adapt(model, None, b.support_x, y, m, steps=5, lr=0.5)
    loss = [masked_mse(predict(model, p, b.support_x), y, m) for p in (before, after)]
    assert loss[1] < loss[0]


def test_config_round_trip_and_old_cards_default_to_the_mlp_head():
    config = ModelConfig.from_dict(user_model().config.to_dict())
    assert config.head == "user"
    assert [p.shape for p in MeLU(config).parameters()] == [
        p.shape for p in user_model().parameters()
    ]
    old = {k: v for k, v in CONFIG.to_dict().items() if k not in {"head", "user_dim"}}
    assert ModelConfig.from_dict(old).head == "mlp"
    with pytest.raises(ValueError, match="unknown head"):
        ModelConfig.from_dict({**CONFIG.to_dict(), "head": "film"})
    with pytest.raises(ValueError, match="hidden layer"):
        ModelConfig.from_dict({**CONFIG.to_dict(), "head": "user", "hidden": []})


def test_meta_sgd_rates_cover_the_adapted_user_parameters():
    model = user_model(meta_sgd=True, inner_lr_init=0.4)
    rates = model.inner_lr()
    assert rates is not None and set(rates) == {"user_offset", "user_vec"}
    b = double(collate(random_tasks(7, 3)))
    fast = adapt(model, None, b.support_x, b.support_y, b.support_mask, steps=2)
    assert np.isfinite(predict(model, fast, b.query_x).detach().numpy()).all()

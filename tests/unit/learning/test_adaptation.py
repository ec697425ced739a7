"""The batched (vmap) inner loop against a per-task Python loop, and masked padding."""

from __future__ import annotations

import pytest
import torch
from metarec.learning.adaptation import (
    adapt,
    adapt_and_predict_embedded,
    adapt_embedded,
    masked_mse,
    predict,
    predict_embedded,
)
from metarec.learning.algorithms import Algorithm, InnerLoop, meta_loss, meta_step
from metarec.learning.tasks import collate

from .helpers import make_model, random_tasks

# float64 everywhere: the batched and looped computations differ only by summation order.
TOL = {"rtol": 1e-9, "atol": 1e-10}


def loop_adapt(model, task, *, steps, lr, create_graph):
    """Reference: one task at a time with torch.autograd.grad (the MeLU reference code's way)."""
    params = dict(model.decision.named_parameters())
    sx = torch.as_tensor(task.support_x)
    sy = torch.as_tensor(task.support_y, dtype=torch.float64)
    h = model.embed(sx)
    for _ in range(steps):
        pred = torch.func.functional_call(model.decision, params, (h,))
        loss = ((pred - sy) ** 2).mean()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {k: p - lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
    return params


def test_batched_adaptation_matches_per_task_loop():
    model = make_model()
    tasks = random_tasks(0, 7)
    batch = collate(tasks)
    fast = adapt(
        model,
        None,
        batch.support_x,
        batch.support_y.double(),
        batch.support_mask.double(),
        steps=3,
        lr=0.05,
    )
    for i, task in enumerate(tasks):
        ref = loop_adapt(model, task, steps=3, lr=0.05, create_graph=False)
        for name, value in ref.items():
            torch.testing.assert_close(fast[name][i], value, **TOL)


@pytest.mark.parametrize("algorithm", [Algorithm.MAML, Algorithm.FOMAML])
def test_meta_gradient_matches_per_task_loop(algorithm):
    tasks = random_tasks(1, 6)
    inner = InnerLoop(steps=2, lr=0.05)
    batched = make_model()
    batch = collate(tasks)
    batch = type(batch)(
        **{k: (v.double() if v.is_floating_point() else v) for k, v in batch.__dict__.items()}
    )
    meta_loss(batched, batch, inner=inner, first_order=algorithm is Algorithm.FOMAML).backward()

    looped = make_model()
    total_query = sum(len(t.query_y) for t in tasks)
    for task in tasks:
        fast = loop_adapt(looped, task, steps=2, lr=0.05, create_graph=algorithm is Algorithm.MAML)
        if algorithm is Algorithm.FOMAML:
            base = dict(looped.decision.named_parameters())
            fast = {k: base[k] + (v - base[k]).detach() for k, v in fast.items()}
        qx = torch.as_tensor(task.query_x)
        qy = torch.as_tensor(task.query_y, dtype=torch.float64)
        pred = torch.func.functional_call(looped.decision, fast, (looped.embed(qx),))
        (((pred - qy) ** 2).sum() / total_query).backward()

    for (name, a), (_, b) in zip(
        batched.named_parameters(), looped.named_parameters(), strict=True
    ):
        assert a.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, **TOL, msg=name)


def test_second_order_differs_from_first_order():
    """The second-order terms are really there (otherwise MAML would equal FOMAML)."""
    tasks = collate(random_tasks(2, 4))
    grads = {}
    for first_order in (False, True):
        model = make_model()
        meta_loss(
            model, tasks, inner=InnerLoop(steps=3, lr=0.1), first_order=first_order
        ).backward()
        grads[first_order] = model.decision.out.weight.grad.clone()
    assert not torch.allclose(grads[False], grads[True], rtol=0, atol=1e-8)


def _run(model, b):
    y, m = b.support_y.double(), b.support_mask.double()
    fast = adapt(model, None, b.support_x, y, m, steps=4, lr=0.05)
    return fast, predict(model, fast, b.query_x)


def test_padding_contents_change_nothing_exactly():
    """Whatever the padded slots hold, adapted weights and predictions are bitwise identical."""
    model = make_model()
    clean = collate(random_tasks(3, 5), pad_to=(24, 8))
    pad = clean.support_mask == 0
    assert pad.any()
    garbage_x = clean.support_x.clone()
    garbage_x[pad] = torch.randint(1, 3, (int(pad.sum()), garbage_x.shape[-1])).to(garbage_x)
    garbage_y = clean.support_y.masked_fill(pad, 1000.0)
    dirty = type(clean)(**{**clean.__dict__, "support_x": garbage_x, "support_y": garbage_y})
    fast_c, pred_c = _run(model, clean)
    fast_d, pred_d = _run(model, dirty)
    for name in fast_c:
        assert torch.equal(fast_c[name], fast_d[name]), name
    assert torch.equal(pred_c, pred_d)


def test_padding_length_changes_nothing():
    """More padding gives the same result up to summation order (float64, 1e-12)."""
    model = make_model()
    tasks = random_tasks(3, 5)
    tight = collate(tasks)
    padded = collate(tasks, pad_to=(40, 17))
    assert padded.support_x.shape[1] == 40 and padded.query_x.shape[1] == 17
    fast_t, pred_t = _run(model, tight)
    fast_p, pred_p = _run(model, padded)
    for name in fast_t:
        torch.testing.assert_close(fast_t[name], fast_p[name], rtol=0, atol=1e-12)
    torch.testing.assert_close(pred_t, pred_p[:, : pred_t.shape[1]], rtol=0, atol=1e-12)


def test_masked_loss_ignores_padding_values():
    pred = torch.tensor([1.0, 2.0, 99.0])
    target = torch.tensor([2.0, 2.0, -50.0])
    mask = torch.tensor([1.0, 1.0, 0.0])
    assert masked_mse(pred, target, mask).item() == pytest.approx(0.5)
    assert masked_mse(pred, target, torch.zeros(3)).item() == 0.0


def test_adapting_reduces_support_loss():
    model = make_model()
    b = collate(random_tasks(4, 8))
    y, m = b.support_y.double(), b.support_mask.double()
    before = adapt(model, None, b.support_x, y, m, steps=0, lr=0.05)
    after = adapt(model, None, b.support_x, y, m, steps=10, lr=0.05)
    loss_before = masked_mse(predict(model, before, b.support_x), y, m)
    loss_after = masked_mse(predict(model, after, b.support_x), y, m)
    assert loss_after < loss_before


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_meta_step_reduces_meta_loss_on_a_fixed_batch(algorithm):
    model = make_model(meta_sgd=algorithm is Algorithm.METASGD, inner_lr_init=0.05)
    b = collate(random_tasks(5, 16))
    b = type(b)(**{k: (v.double() if v.is_floating_point() else v) for k, v in b.__dict__.items()})
    inner = InnerLoop(steps=2, lr=0.05)
    start = meta_loss(model, b, inner=inner).item()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        meta_step(model, optimizer, b, algorithm=algorithm, inner=inner)
    assert meta_loss(model, b, inner=inner).item() < start
    if algorithm is Algorithm.METASGD:
        rates = model.inner_lr()
        assert rates is not None
        assert not torch.allclose(rates["out.bias"], torch.full_like(rates["out.bias"], 0.05))


def test_adapt_without_rate_needs_meta_sgd():
    model = make_model()
    b = collate(random_tasks(6, 2))
    with pytest.raises(ValueError, match="lr is required"):
        adapt(model, None, b.support_x, b.support_y, b.support_mask, steps=1)


@pytest.mark.parametrize("hidden", [(16,), (16, 16), (16, 8, 12)])
@pytest.mark.parametrize("first_order", [False, True])
def test_dual_first_layer_query_path_matches_explicit_weights(first_order, hidden):
    """``adapt_and_predict_embedded`` (hidden layers in closed form, never built) equals
    building the adapted weights with the plain vmap loop and predicting with them: values and
    meta-gradients (embeddings included)."""
    batch = collate(random_tasks(4, 5))
    results = {}
    for dual in (True, False):
        model = make_model(hidden=hidden)
        h_s, h_q = model.embed(batch.support_x), model.embed(batch.query_x)
        y, m = batch.support_y.double(), batch.support_mask.double()
        if dual:
            pred = adapt_and_predict_embedded(
                model.decision, model.decision_params(), h_s, y, m, h_q,
                steps=3, lr=0.05, first_order=first_order,
            )  # fmt: skip
        else:  # a Meta-SGD-style rate mapping takes the plain path (same rate everywhere)
            rates = {k: torch.full_like(v, 0.05) for k, v in model.decision_params().items()}
            fast = adapt_embedded(
                model.decision, model.decision_params(), h_s, y, m,
                steps=3, lr=rates, first_order=first_order,
            )  # fmt: skip
            pred = predict_embedded(model.decision, fast, h_q)
        pred.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[dual] = (pred.detach(), grads)
    torch.testing.assert_close(results[True][0], results[False][0], **TOL)
    assert results[True][1].keys() == results[False][1].keys()
    for name, g in results[True][1].items():
        torch.testing.assert_close(g, results[False][1][name], **TOL, msg=name)


def test_adaptation_without_hidden_layers_takes_the_plain_path():
    model = make_model(hidden=())
    batch = collate(random_tasks(5, 3))
    y, m = batch.support_y.double(), batch.support_mask.double()
    fast = adapt(model, None, batch.support_x, y, m, steps=2, lr=0.05)
    assert fast["out.weight"].shape[0] == 3


@pytest.mark.parametrize("hidden", [(16,), (16, 8, 12)])
def test_closed_form_adapted_weights_match_plain_loop(hidden):
    """``adapt`` (closed form, weights built at the end) equals the plain per-parameter loop."""
    model = make_model(hidden=hidden)
    batch = collate(random_tasks(6, 4))
    y, m = batch.support_y.double(), batch.support_mask.double()
    fast = adapt(model, None, batch.support_x, y, m, steps=3, lr=0.05)
    rates = {k: torch.full_like(v, 0.05) for k, v in model.decision_params().items()}
    plain = adapt(model, None, batch.support_x, y, m, steps=3, lr=rates)
    for name, value in plain.items():
        torch.testing.assert_close(fast[name], value, **TOL, msg=name)

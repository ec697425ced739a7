"""The catalogue ranker: its batched closed-form inner loop equals a per-user autograd loop."""

from __future__ import annotations

import torch
from metarec.learning.ranker import (
    Ranker,
    RankerConfig,
    adapt_users,
    adapted_scores,
    exclusion_mask,
    query_loss,
)

# float64 throughout: the closed form and autograd agree to round-off (stated: 1e-10).
TOLERANCE = 1e-10


def _model() -> Ranker:
    torch.manual_seed(0)
    config = RankerConfig(
        user_field_sizes=(3, 4), item_field_sizes=(9, 3), item_bags=((5, 2),), dim=6
    )
    model = Ranker(config).double()
    with torch.no_grad():
        model.encoder.weight.normal_(0, 0.3)  # non-zero, so the support encoder is exercised
    return model


def _inputs() -> tuple[torch.Tensor, ...]:
    item_codes = torch.tensor(
        [[1, 1, 1, 0], [2, 1, 2, 3], [3, 2, 1, 0], [4, 2, 4, 0], [5, 2, 0, 0], [0, 1, 2, 0]]
    )  # (I=6, 2 fields + 2 genres); the last item is new (id unknown)
    user_codes = torch.tensor([[1, 2], [2, 3], [0, 0]])  # (T=3, 2)
    support = torch.tensor([[0, 2, 0], [1, 3, 4], [5, 0, 0]])  # (T, S) padded with item 0
    weights = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 0.5], [1.0, 0.0, 0.0]]).double()
    return item_codes, user_codes, support, weights


def _per_user_loop(model: Ranker, steps: int) -> torch.Tensor:
    """Reference: one user at a time, the gradient from torch.autograd of the support loss."""
    item_codes, user_codes, support, weights = _inputs()
    tower = model.items(item_codes)
    out = []
    for t in range(support.shape[0]):
        real = weights[t] > 0
        items, w = support[t][real], weights[t][real]
        u = model.prior(user_codes[t : t + 1], tower, support[t : t + 1], weights[t : t + 1])[0]
        for _ in range(steps):
            u = u.detach().requires_grad_(True)
            log_p = torch.log_softmax(tower.b + tower.v @ u, dim=0)  # (I,)
            loss = -(w * log_p[items]).sum() / w.sum()
            (g,) = torch.autograd.grad(loss, u)
            u = u - model.inner_lr() * g
        out.append(u.detach())
    return torch.stack(out)


def test_batched_inner_loop_equals_a_per_user_loop():
    model = _model()
    item_codes, user_codes, support, weights = _inputs()
    tower = model.items(item_codes)
    u0 = model.prior(user_codes, tower, support, weights)
    batched = adapt_users(
        u0, tower, support, weights, steps=3, lr=model.inner_lr(), first_order=True
    )
    torch.testing.assert_close(batched, _per_user_loop(model, 3), atol=TOLERANCE, rtol=0)


def test_padding_and_other_users_change_nothing():
    model = _model()
    item_codes, user_codes, support, weights = _inputs()
    full = adapted_scores(model, item_codes, user_codes, support, weights, steps=2)
    alone = adapted_scores(
        model, item_codes, user_codes[:1], support[:1, :2], weights[:1, :2], steps=2
    )
    torch.testing.assert_close(full[:1], alone, atol=TOLERANCE, rtol=0)


def test_zero_steps_score_with_the_prior_and_a_user_without_support_stays_there():
    model = _model()
    item_codes, user_codes, support, weights = _inputs()
    tower = model.items(item_codes)
    u0 = model.prior(user_codes, tower, support, weights)
    empty = torch.zeros_like(weights)
    adapted = adapt_users(u0, tower, support, empty, steps=4, lr=model.inner_lr())
    torch.testing.assert_close(adapted, u0, atol=0, rtol=0)


def test_second_order_meta_gradient_reaches_the_step_sizes_and_embeddings():
    model = _model()
    item_codes, user_codes, support, weights = _inputs()
    s = adapted_scores(model, item_codes, user_codes, support, weights, steps=2)
    query = torch.tensor([[1, 3], [0, 2], [2, 4]])
    q_weights = torch.ones(3, 2, dtype=torch.float64)
    loss = query_loss(s, query, q_weights, exclusion_mask(6, support, weights))
    loss.backward()
    assert model.log_inner_lr.grad is not None and model.log_inner_lr.grad.abs().sum() > 0
    assert model.item_fields[0].weight.grad.abs().sum() > 0
    assert model.encoder.weight.grad.abs().sum() > 0


def test_query_loss_excludes_support_items_from_the_softmax():
    scores = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    query = torch.tensor([[1]])
    weights = torch.ones(1, 1, dtype=torch.float64)
    excluded = torch.tensor([[True, False, False]])
    # softmax over items 1 and 2 only: −log(e¹ / (e¹ + e⁰))
    e = torch.exp(torch.tensor(1.0, dtype=torch.float64))
    loss = query_loss(scores, query, weights, excluded)
    torch.testing.assert_close(loss, -torch.log(e / (e + 1.0)), atol=1e-12, rtol=0)

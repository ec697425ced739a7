"""The meta-learned factor fold-in: batched inner loops, padding, prior, config round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from metarec.learning.factor_model import (
    FactorConfig,
    FactorModel,
    fold_in_loss,
    map_fold_in,
    meta_loss,
)
from metarec.learning.tasks import collate

from .helpers import CONFIG, random_tasks

TOL = 1e-9  # float64: batched and per-task results differ only by summation order


def make_factor_model(
    seed: int = 0, *, inner: str = "map", support_encoder: bool = False
) -> FactorModel:
    """A small float64 factor model on the helpers' row layout, with non-trivial parameters."""
    config = FactorConfig(
        field_names=CONFIG.field_names,
        field_sizes=CONFIG.field_sizes,
        n_factors=4,
        inner=inner,
        inner_steps=4,
        inner_lr_init=0.3,
        support_encoder=support_encoder,
    )
    torch.manual_seed(seed)
    model = FactorModel(config).double()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith(("log_", "mean")):
                param.normal_(0.0, 0.3)
        model.item_bias.weight[0].zero_()
        model.item_factors.weight[0].zero_()
        for emb in model.prior_fields:
            emb.weight[0].zero_()
        if model.support_vectors is not None:
            model.support_vectors.weight[0].zero_()
        model.log_precision.add_(torch.linspace(-0.5, 0.5, config.user_dim, dtype=torch.float64))
    return model


def _batch(tasks, **kwargs):
    batch = collate(tasks, **kwargs)
    return (
        batch.support_x,
        batch.support_y.double(),
        batch.support_mask.double(),
        batch.query_x,
        batch.query_y.double(),
        batch.query_mask.double(),
    )


def _sgd_one_task(model: FactorModel, task) -> torch.Tensor:
    """The reference inner loop: one task, plain autograd, one step at a time."""
    sx = torch.as_tensor(task.support_x)[None]  # (1, S, W)
    sy = torch.as_tensor(task.support_y, dtype=torch.float64)[None]  # (1, S)
    mask = torch.ones_like(sy)  # (1, S)
    offset, z = model.item_terms(sx)  # (1, S), (1, S, D)
    prior = model.prior_mean(torch.as_tensor(task.query_x[:1]), sx, sy, mask)[0]  # (D,)
    theta = prior.clone()
    for _ in range(model.config.inner_steps):
        loss = fold_in_loss(theta, z[0], (sy - offset)[0], mask[0], prior, model.precision)
        (g,) = torch.autograd.grad(loss, theta if theta.requires_grad else [theta.requires_grad_()])
        theta = theta - model.inner_rates * g
    return theta.detach()


def _map_one_task(model: FactorModel, task) -> torch.Tensor:
    """The reference closed form: one task, an explicit normal-equation solve."""
    sx = torch.as_tensor(task.support_x)  # (S, W)
    sy = torch.as_tensor(task.support_y, dtype=torch.float64)  # (S,)
    offset, z = model.item_terms(sx)  # (S,), (S, D)
    mask = torch.ones(1, len(sy), dtype=torch.float64)
    prior = model.prior_mean(torch.as_tensor(task.query_x[:1]), sx[None], sy[None], mask)[0]
    lam = model.precision
    a = z.T @ z + torch.diag(lam)  # (D, D)
    return torch.linalg.solve(a, z.T @ (sy - offset) + lam * prior).detach()  # (D,)


@pytest.mark.parametrize("inner", ["map", "sgd"])
@pytest.mark.parametrize("support_encoder", [False, True])
def test_batched_inner_loop_equals_a_per_task_loop(inner, support_encoder):
    model = make_factor_model(1, inner=inner, support_encoder=support_encoder)
    tasks = random_tasks(3, 7, support=(1, 9))
    sx, sy, sm, qx, *_ = _batch(tasks)
    batched = model.adapt(sx, sy, sm, user_x=qx[:, 0]).detach()  # (T, D)
    reference = _map_one_task if inner == "map" else _sgd_one_task
    for i, task in enumerate(tasks):
        torch.testing.assert_close(batched[i], reference(model, task), rtol=0, atol=TOL)


def test_meta_gradients_of_the_batch_equal_the_sum_over_tasks():
    model = make_factor_model(2, inner="sgd")
    tasks = random_tasks(4, 5, support=(2, 8))
    n_query = sum(len(t.query_y) for t in tasks)
    batched = torch.autograd.grad(meta_loss(model, *_batch(tasks)), list(model.parameters()))
    summed = [torch.zeros_like(p) for p in model.parameters()]
    for task in tasks:
        loss = meta_loss(model, *_batch([task])) * len(task.query_y) / n_query
        for acc, g in zip(summed, torch.autograd.grad(loss, list(model.parameters())), strict=True):
            acc += g
    for a, b in zip(batched, summed, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)


def test_zero_steps_and_an_empty_support_return_the_prior_mean():
    tasks = random_tasks(5, 4)
    sgd = make_factor_model(3, inner="sgd")
    sx, sy, sm, qx, *_ = _batch(tasks)
    prior = sgd.prior_mean(qx[:, 0], sx, sy, sm)  # (T, D)
    torch.testing.assert_close(sgd.adapt(sx, sy, sm, user_x=qx[:, 0], steps=0), prior)
    model = make_factor_model(3, inner="map")
    empty = torch.zeros_like(sm)
    theta = model.adapt(sx, sy, empty, user_x=qx[:, 0])
    torch.testing.assert_close(theta, model.prior_mean(qx[:, 0], sx, sy, empty), rtol=0, atol=TOL)


def test_the_prior_mean_comes_from_the_user_attributes():
    model = make_factor_model(4)
    tasks = random_tasks(6, 2)
    _, _, _, qx, *_ = _batch(tasks)
    rows = qx[:, 0].clone()  # (T, W)
    rows[1, :3] = rows[0, :3]  # same gender, age, occupation; other item and genres
    prior = model.prior_mean(rows, *(t[:, :1] for t in _batch(tasks)[:3]))
    torch.testing.assert_close(prior[0], prior[1])


@pytest.mark.parametrize("inner", ["map", "sgd"])
@pytest.mark.parametrize("support_encoder", [False, True])
def test_padding_rows_change_nothing(inner, support_encoder):
    model = make_factor_model(5, inner=inner, support_encoder=support_encoder)
    tasks = random_tasks(7, 6, support=(1, 6))
    sx, sy, sm, qx, qy, qm = _batch(tasks)
    base = model(sx, sy, sm, qx)  # (T, Q)
    # whatever the padded slots hold, results are bitwise identical
    noisy_x, noisy_y = sx.clone(), sy.clone()
    pad = sm == 0
    noisy_x[pad] = torch.as_tensor(tasks[0].support_x[:1]).to(noisy_x).expand(int(pad.sum()), -1)
    noisy_y[pad] = 4.0
    assert torch.equal(model(noisy_x, noisy_y, sm, qx), base)
    # padding to longer sets changes results only by summation order
    longer = _batch(tasks, pad_to=(15, 12))
    pred = model(*longer[:4])[:, : qx.shape[1]]
    torch.testing.assert_close(pred, base, rtol=0, atol=1e-12)
    loss = meta_loss(model, sx, sy, sm, qx, qy, qm)
    torch.testing.assert_close(meta_loss(model, *longer), loss, rtol=0, atol=1e-12)


def test_map_fold_in_is_the_minimum_of_the_inner_loss():
    model = make_factor_model(6, inner="sgd")
    task = random_tasks(8, 1, support=(6, 6))[0]
    sx, sy, sm, qx, *_ = _batch([task])
    offset, z = model.item_terms(sx)
    prior = model.prior_mean(qx[:, 0], sx, sy, sm)
    theta = map_fold_in(z, sy - offset, prior, model.precision)[0].requires_grad_()
    loss = fold_in_loss(theta, z[0], (sy - offset)[0], sm[0], prior[0], model.precision)
    (g,) = torch.autograd.grad(loss, theta)
    assert float(g.abs().max()) < 1e-10


def test_config_round_trips_through_json_and_state_dict():
    model = make_factor_model(7, inner="sgd", support_encoder=True)
    data = json.loads(json.dumps(model.config.to_dict()))
    config = FactorConfig.from_dict(data)
    assert config == model.config
    rebuilt = FactorModel(config).double()
    rebuilt.load_state_dict(model.state_dict())
    tasks = random_tasks(9, 3)
    batch = _batch(tasks)[:4]
    torch.testing.assert_close(rebuilt(*batch), model(*batch), rtol=0, atol=0)


def test_config_rejects_unknown_fields_and_modes():
    with pytest.raises(ValueError, match="inner"):
        FactorConfig(field_names=("item_id",), field_sizes=(5,), user_fields=(), inner="newton")
    with pytest.raises(ValueError, match="not in the encoded row"):
        FactorConfig(field_names=("item_id",), field_sizes=(5,))


def test_unknown_items_have_no_bias_and_no_factors():
    model = make_factor_model(8)
    offset, z = model.item_terms_from_codes(torch.tensor([0]))
    assert float(offset[0].detach()) == pytest.approx(float(model.mean.detach()))
    np.testing.assert_array_equal(z[0, 1:].detach().numpy(), 0.0)


def test_neighbour_correction_equals_a_per_task_loop_and_ignores_padding():
    import dataclasses

    base = make_factor_model(3)
    config = dataclasses.replace(
        base.config, neighbour_weight=0.8, neighbour_count=2.0, neighbour_power=2.0
    )
    model = FactorModel(config).double()
    model.load_state_dict(base.state_dict())
    tasks = random_tasks(11, 5, support=(1, 9))
    sx, sy, sm, qx, *_ = _batch(tasks)
    theta = model.adapt(sx, sy, sm, user_x=qx[:, 0]).detach()  # (T, D)
    batched = model.neighbour_correction(theta, sx, sy, sm, qx).detach()  # (T, Q)
    col = config.field_names.index(config.item_field)
    q = model.item_factors.weight.detach().numpy()  # (I, F)
    for i, task in enumerate(tasks):
        th = theta[i : i + 1]
        support = torch.as_tensor(task.support_x)[None]  # (1, S, W)
        resid = task.support_y - model.predict(th, support)[0].detach().numpy()  # (S,)
        for j, row in enumerate(task.query_x):
            a = q[row[col]]
            num = den = 0.0
            for s, srow in enumerate(task.support_x):
                b = q[srow[col]]
                norm = max(np.linalg.norm(a), 1e-12) * max(np.linalg.norm(b), 1e-12)
                w = max(float(a @ b) / norm, 0.0) ** 2.0
                num, den = num + w * resid[s], den + w
            expected = 0.8 * num / (den + 2.0)
            assert float(batched[i, j]) == pytest.approx(expected, abs=1e-9)
    off = base.neighbour_correction(theta, sx, sy, sm, qx)
    assert float(off.abs().max()) == 0.0


def test_a_seed_ensemble_averages_its_members_and_round_trips():
    import dataclasses

    members = [make_factor_model(s) for s in (12, 13, 14)]
    config = dataclasses.replace(members[0].config, members=3, neighbour_weight=1.0)
    model = FactorModel(config).double()
    state = dict(members[0].state_dict())
    for m, member in enumerate(members[1:]):
        state.update({f"extra_members.{m}.{k}": v for k, v in member.state_dict().items()})
    model.load_state_dict(state)
    tasks = random_tasks(15, 4, support=(1, 7))
    sx, sy, sm, qx, *_ = _batch(tasks)
    singles = []
    for member in members:
        single = FactorModel(dataclasses.replace(config, members=1)).double()
        single.load_state_dict(member.state_dict())
        singles.append(single.predict_member(sx, sy, sm, qx))
    expected = torch.stack(singles).mean(0)
    torch.testing.assert_close(model.predict_tasks(sx, sy, sm, qx), expected, rtol=0, atol=TOL)
    rebuilt = FactorModel(FactorConfig.from_dict(json.loads(json.dumps(config.to_dict()))))
    rebuilt = rebuilt.double()
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.predict_tasks(sx, sy, sm, qx), model.predict_tasks(sx, sy, sm, qx))
    with pytest.raises(ValueError, match="members"):
        dataclasses.replace(config, members=0)


def test_size_precision_scales_the_prior_precision_by_support_size():
    import dataclasses

    base = make_factor_model(16)
    model = FactorModel(dataclasses.replace(base.config, size_precision=True)).double()
    state = dict(base.state_dict())
    scale = torch.linspace(-1.0, 1.0, 2 * model.config.size_knots, dtype=torch.float64)
    state["size_log_scale"] = scale.reshape(-1, 2)
    model.load_state_dict(state)
    tasks = random_tasks(17, 5, support=(1, 9))
    sx, sy, sm, qx, *_ = _batch(tasks)
    theta = model.adapt(sx, sy, sm, user_x=qx[:, 0]).detach()
    for i, task in enumerate(tasks):
        pos = min(np.log2(len(task.support_y) + 1.0), model.config.size_knots - 1.0)
        g = [
            np.interp(pos, range(model.config.size_knots), scale.reshape(-1, 2)[:, j])
            for j in (0, 1)
        ]
        lam = base.precision * torch.tensor([np.exp(g[0])] + [np.exp(g[1])] * 4).double()
        sxi = torch.as_tensor(task.support_x)
        syi = torch.as_tensor(task.support_y, dtype=torch.float64)
        offset, z = base.item_terms(sxi)
        prior = base.prior_mean(qx[i : i + 1, 0], sxi[None], syi[None], torch.ones(1, len(syi)))
        ref = torch.linalg.solve(z.T @ z + torch.diag(lam), z.T @ (syi - offset) + lam * prior[0])
        torch.testing.assert_close(theta[i], ref.detach(), rtol=0, atol=TOL)


def test_a_trained_neighbour_correction_is_part_of_the_meta_loss():
    import dataclasses

    base = make_factor_model(18)
    config = dataclasses.replace(base.config, train_neighbour=True, neighbour_weight=1.0)
    model = FactorModel(config).double()
    model.load_state_dict({**base.state_dict(), "log_neighbour": torch.tensor([0.0, 1.0])})
    tasks = random_tasks(19, 4, support=(2, 8))
    batch = _batch(tasks)
    theta = model.adapt(*batch[:3], user_x=batch[3][:, 0])
    expected = model.predict(theta, batch[3]) + model.neighbour_correction(theta, *batch[:4])
    torch.testing.assert_close(model(*batch[:4]), expected, rtol=0, atol=TOL)
    (g,) = torch.autograd.grad(meta_loss(model, *batch), [model.log_neighbour])
    assert float(g.abs().sum()) > 0.0

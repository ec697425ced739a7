"""The decision MLP's one forward pass (:mod:`metarec.learning.scoring`) in all its uses.

The module forward, the per-task (batched) layers, the dual form and serving's split rows must
give the same outputs as the plain MLP on the same parameters.
"""

from __future__ import annotations

import pytest
import torch
from metarec.learning.scoring import score, score_preactivation, score_split_rows

from .helpers import make_model

TOL = {"rtol": 1e-9, "atol": 1e-10}  # float64: only the summation order differs
N_TASKS, N_ROWS = 3, 7


def _per_task_params(decision, seed: int) -> dict[str, torch.Tensor]:
    """Different parameters per task (as after adaptation), each with a task axis (T, ...)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        k: v.detach() + 0.1 * torch.randn(N_TASKS, *v.shape, generator=gen, dtype=v.dtype)
        for k, v in decision.named_parameters()
    }


def _width(decision) -> int:
    """The MLP's input width D."""
    return decision.layers(dict(decision.named_parameters()))[0][0].shape[-1]


def _reference(decision, params: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """Task t's rows (T, N, D) through the module itself with task t's parameters → (T, N)."""
    outs = []
    for t in range(N_TASKS):
        p_t = {k: v[t] for k, v in params.items()}
        outs.append(torch.func.functional_call(decision, p_t, (rows[t],)))
    return torch.stack(outs)


@pytest.mark.parametrize("hidden", [(), (8,), (8, 6)])
def test_module_forward_is_the_one_forward_pass(hidden):
    decision = make_model(hidden=hidden).decision
    h = torch.randn(4, 5, _width(decision), dtype=torch.float64)
    expected = h
    for layer in decision.hidden:
        expected = torch.relu(layer(expected))
    expected = decision.out(expected).squeeze(-1)
    torch.testing.assert_close(decision(h), expected, **TOL)
    params = dict(decision.named_parameters())
    torch.testing.assert_close(score(decision.layers(params), h), expected, **TOL)


@pytest.mark.parametrize("hidden", [(), (8,), (8, 6)])
def test_per_task_layers_equal_the_module_per_task(hidden):
    decision = make_model(hidden=hidden).decision
    params = _per_task_params(decision, seed=1)
    width = _width(decision)
    rows = torch.randn(N_TASKS, N_ROWS, width, dtype=torch.float64)
    batched = score(decision.layers(params), rows)  # (T, N): batched matrix products
    torch.testing.assert_close(batched, _reference(decision, params, rows), **TOL)


@pytest.mark.parametrize("hidden", [(), (8,), (8, 6)])
@pytest.mark.parametrize("shared_per_task", [False, True])
def test_split_rows_equal_the_module_on_composed_rows(hidden, shared_per_task):
    """Serving's scorer (item part shared, user part per task) equals the module forward."""
    decision = make_model(hidden=hidden).decision
    params = _per_task_params(decision, seed=2)
    width = _width(decision)
    gen = torch.Generator().manual_seed(3)
    columns = torch.arange(width // 2, width)  # the shared part is zero elsewhere
    shape = (N_TASKS, N_ROWS, len(columns)) if shared_per_task else (N_ROWS, len(columns))
    h_shared = torch.randn(*shape, generator=gen, dtype=torch.float64)
    h_task = torch.randn(N_TASKS, width, generator=gen, dtype=torch.float64)
    composed = h_task.unsqueeze(1).repeat(1, N_ROWS, 1)  # (T, N, D)
    composed[..., columns] += h_shared
    split = score_split_rows(decision.layers(params), h_shared, h_task, shared_columns=columns)
    torch.testing.assert_close(split, _reference(decision, params, composed), **TOL)


def test_dual_terms_equal_the_moved_layer():
    """A later layer given as ``(a, b)`` equals that layer with weight W + bᵀa, bias b₀ + Σb."""
    decision = make_model(hidden=(8, 6)).decision
    params = {k: v.detach() for k, v in decision.named_parameters()}
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(N_ROWS, 8, generator=gen, dtype=torch.float64)  # first-layer pre-activations
    a = torch.randn(4, 8, generator=gen, dtype=torch.float64)  # (k·S, in)
    b = torch.randn(4, 6, generator=gen, dtype=torch.float64)  # (k·S, out)
    later = decision.layers(params)[1:]
    dual = score_preactivation(later, z, dual=[(a, b, None)])
    (w, bias), out = later
    moved = [(w + b.T @ a, bias + b.sum(0)), out]
    torch.testing.assert_close(dual, score_preactivation(moved, z), **TOL)


def test_in_place_scoring_gives_the_same_values():
    decision = make_model(hidden=(8, 6)).decision
    params = _per_task_params(decision, seed=5)
    z = torch.randn(N_TASKS, N_ROWS, 8, dtype=torch.float64)
    later = decision.layers(params)[1:]
    expected = score_preactivation(later, z)
    assert torch.equal(score_preactivation(later, z.clone(), in_place=True), expected)


def test_layers_and_named_are_inverses():
    decision = make_model(hidden=(8, 6)).decision
    params = dict(decision.named_parameters())
    layers = decision.layers(params)
    assert len(layers) == 3 and decision.layer_names == ("hidden.0", "hidden.1", "out")
    assert decision.named(layers) == params
    assert set(decision.named(layers[:1])) == {"hidden.0.weight", "hidden.0.bias"}
    with pytest.raises(ValueError, match="4 layers given, the MLP has 3"):
        decision.named([*layers, layers[-1]])

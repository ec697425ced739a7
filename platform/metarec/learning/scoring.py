"""The decision MLP's forward pass, written once, as a pure function of its layers' parameters.

The MLP is a stack of linear layers with a ReLU between them and one output unit. Every caller
runs it through this module:

* :meth:`~metarec.learning.model.DecisionLayers.run` (and so ``forward``, training's inner loop
  under ``vmap``, evaluation): :func:`score` with one set of parameters;
* the closed-form (dual) inner loop of :mod:`metarec.learning.adaptation`:
  :func:`score_preactivation` from the first layer's pre-activations, with each later hidden
  layer's accumulated update given in dual form;
* serving (:mod:`metarec.serving.adapter`): :func:`score_split_rows`, many requests' adapted
  parameters at once over rows whose embedding is a shared item part plus a per-request user
  part.

A layer is a ``(weight, bias)`` pair: weight (out, in) and bias (out,), or, with a leading task
axis, (T, out, in) and (T, out) (each task's own parameters, applied to that task's rows).
:meth:`~metarec.learning.model.DecisionLayers.layers` turns the module's named parameters into
this list, so no caller needs the parameter names.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F  # noqa: N812

Linear = tuple[torch.Tensor, torch.Tensor]
"""One linear layer: weight (..., out, in) and bias (..., out)."""

DualTerms = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]
"""A later hidden layer's dual-form update ``(a, b, shift)`` (see :func:`score_preactivation`)."""


def linear(layer: Linear, x: torch.Tensor) -> torch.Tensor:
    """Apply one linear layer.

    Args:
        layer: Weight and bias; either one set (out, in), (out,) or one per task (T, out, in),
            (T, out).
        x: Inputs (..., in) for one set of parameters, (T, N, in) for per-task parameters.

    Returns:
        Outputs (..., out), or (T, N, out).
    """
    weight, bias = layer
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def score(layers: Sequence[Linear], h: torch.Tensor) -> torch.Tensor:
    """The MLP's outputs for inputs ``h``.

    Args:
        layers: Every linear layer in order, the output unit last.
        h: Inputs (..., D), or (T, N, D) for per-task parameters.

    Returns:
        Outputs (...), or (T, N).
    """
    return score_preactivation(layers[1:], linear(layers[0], h))


def score_preactivation(
    later: Sequence[Linear],
    z: torch.Tensor,
    *,
    dual: Sequence[DualTerms] | None = None,
    inputs: list[torch.Tensor] | None = None,
    in_place: bool = False,
) -> torch.Tensor:
    """The MLP's outputs from the first layer's pre-activations ``z``.

    Args:
        later: The layers after the first, the output unit last.
        z: First-layer pre-activations (..., H1), or (T, N, H1) for per-task parameters.
        dual: One ``(a, b, shift)`` per hidden layer in ``later``: its output becomes
            ``layer(x) + (x aᵀ + 1) b + shift``, i.e. the layer with weight ``W + bᵀ a`` and
            bias ``b₀ + Σ b`` (a: (N, in), b: (N, out), either None for no history; shift:
            (..., out) or None).
        inputs: Collects the input x (..., in) of each hidden layer in ``later``.
        in_place: Apply the ReLUs in place, overwriting ``z`` and the intermediate outputs
            (for callers that own ``z`` and need no gradient through it: less memory traffic,
            the same values).

    Returns:
        Outputs (...), or (T, N).
    """
    n_hidden = len(later) - 1  # the last layer is the output unit
    for n, layer in enumerate(later):
        x = z.relu_() if in_place else torch.relu(z)  # (..., in)
        if inputs is not None and n < n_hidden:
            inputs.append(x)
        z = linear(layer, x)  # (..., out)
        if dual is not None and n < n_hidden:
            z = _add_dual(z, x, dual[n])
    return z.squeeze(-1)


def _add_dual(z: torch.Tensor, x: torch.Tensor, terms: DualTerms) -> torch.Tensor:
    """``z + (x aᵀ + 1) b + shift`` for whichever of the terms are present."""
    a, b, shift = terms
    if a is not None:
        z = z + (x @ a.transpose(-1, -2) + 1) @ b  # (..., out)
    if shift is not None:
        z = z + shift
    return z


def score_split_rows(
    layers: Sequence[Linear],
    h_shared: torch.Tensor,
    h_task: torch.Tensor,
    *,
    shared_columns: torch.Tensor,
) -> torch.Tensor:
    """Outputs of rows ``h_shared[n] + h_task[t]`` under each task's own parameters.

    The first layer is linear, so it is applied to each part separately: the shared part is one
    matrix product with every task's weight at once and the row embeddings are never composed.
    The shared part reads only ``shared_columns`` (every other column of it is zero), so only
    those columns of the first weight are multiplied. Equal to :func:`score` of the composed
    rows up to float rounding (the sums are reassociated).

    Args:
        layers: Every linear layer in order, each with a leading task axis (T, ...).
        h_shared: The ``shared_columns`` of the shared part, the same rows for every task
            (N, C) or rows per task (T, N, C).
        h_task: Each task's part (T, D), added to all of its rows.
        shared_columns: The columns ``h_shared`` holds (C,), indices into D.

    Returns:
        Outputs (T, N).
    """
    weight, bias = layers[0]  # (T, H1, D), (T, H1)
    z_task = torch.baddbmm(bias.unsqueeze(1), h_task.unsqueeze(1), weight.transpose(1, 2))
    w_shared = weight.index_select(2, shared_columns)  # (T, H1, C)
    # In place on the fresh (T, N, ·) products: the same values, less memory traffic.
    z = torch.matmul(h_shared, w_shared.transpose(1, 2)).add_(z_task)  # (T, N, H1)
    return score_preactivation(layers[1:], z, in_place=True)

"""Per-task adaptation of the decision layers, for a whole batch of tasks at once.

:func:`adapt` is the one adaptation function of MetaRec: meta-training differentiates through it,
evaluation and fine-tuning call it, and the serving layer calls it to adapt to a batch of
requests. The inner loop of every task runs together: ``torch.func.grad`` gives one task's
gradient, ``torch.func.vmap`` maps it over the task axis, ``functional_call`` runs the decision
MLP with each task's own parameters. Support sets are padded; the masked mean loss makes padded
rows contribute exactly zero to every gradient.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.func import functional_call, grad, vmap

from metarec.learning.model import MeLU

Params = dict[str, torch.Tensor]
LearningRate = float | Mapping[str, torch.Tensor]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the examples where ``mask`` is 1 (0 when there are none)."""
    return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)


def _rate(lr: LearningRate, name: str) -> torch.Tensor | float:
    return lr if isinstance(lr, float | int) else lr[name]


def _step(param: torch.Tensor, grad: torch.Tensor, rate: torch.Tensor | float) -> torch.Tensor:
    """``param - rate * grad``, fused into one op for a scalar rate (the memory-bound part)."""
    if isinstance(rate, torch.Tensor):
        return param - rate * grad
    return torch.add(param, grad, alpha=-float(rate))


def adapt_embedded(
    decision: torch.nn.Module,
    params: Mapping[str, torch.Tensor],
    h: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    *,
    steps: int,
    lr: LearningRate,
    first_order: bool = False,
) -> Params:
    """Adapt ``params`` of ``decision`` to every task, from already embedded support rows.

    Args:
        decision: The decision module (its own parameters are not used, only its structure).
        params: Shared starting parameters (no task axis).
        h: Embedded support rows, shape (T, S, D).
        y: Support ratings, shape (T, S).
        mask: Support mask, shape (T, S).
        steps: Gradient steps per task.
        lr: Inner learning rate, or one rate tensor per parameter (Meta-SGD).
        first_order: Treat inner gradients as constants (first-order MAML, Reptile).

    Returns:
        Adapted parameters, each with a leading task axis (T, ...).
    """
    start = dict(params)

    def task_loss(
        p: Params, h_t: torch.Tensor, y_t: torch.Tensor, m_t: torch.Tensor
    ) -> torch.Tensor:
        pred = functional_call(decision, p, (h_t,))  # (S,)
        return masked_mse(pred, y_t, m_t)  # ()

    task_grad = grad(task_loss)

    def one_task(h_t: torch.Tensor, y_t: torch.Tensor, m_t: torch.Tensor) -> Params:
        p = start
        for _ in range(steps):
            g = task_grad(p, h_t, y_t, m_t)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
            p = {k: _step(p[k], g[k], _rate(lr, k)) for k in p}
        return p

    if steps == 0:
        n_tasks = h.shape[0]
        return {k: v.unsqueeze(0).expand(n_tasks, *v.shape) for k, v in start.items()}
    return vmap(one_task)(h, y, mask)


def adapt(
    model: MeLU,
    params: Mapping[str, torch.Tensor] | None,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    support_mask: torch.Tensor,
    *,
    steps: int,
    lr: LearningRate | None = None,
    first_order: bool = False,
) -> Params:
    """Adapt the decision layers of ``model`` to a batch of tasks (users or requests).

    Args:
        model: The meta-trained model (its embeddings are used as they are).
        params: Starting decision parameters; None means the model's own.
        support_x: Encoded support rows, shape (T, S, W).
        support_y: Support ratings, shape (T, S).
        support_mask: 1 for real rows, 0 for padding, shape (T, S).
        steps: Gradient steps.
        lr: Inner learning rate; None means the model's Meta-SGD rates (required then).
        first_order: Do not build the graph of second derivatives.

    Returns:
        Adapted decision parameters with a leading task axis; pass them to :func:`predict`.
    """
    if params is None:
        params = model.decision_params()
    if lr is None:
        lr = model.inner_lr()
        if lr is None:
            raise ValueError("lr is required for a model without Meta-SGD rates")
    h = model.embed(support_x)  # (T, S, D)
    target = support_y.to(h.dtype) - model.offset(support_x)  # (T, S) what the MLP must add
    return adapt_embedded(
        model.decision,
        params,
        h,
        target,
        support_mask.to(h.dtype),
        steps=steps,
        lr=lr,
        first_order=first_order,
    )


def predict_embedded(decision: torch.nn.Module, adapted: Params, h: torch.Tensor) -> torch.Tensor:
    """Predict with per-task parameters (T, ...) from embedded rows (T, Q, D) → (T, Q)."""

    def one_task(p: Params, h_t: torch.Tensor) -> torch.Tensor:
        return functional_call(decision, p, (h_t,))  # (Q,)

    return vmap(one_task)(adapted, h)


def predict(model: MeLU, adapted: Params, x: torch.Tensor) -> torch.Tensor:
    """Predict ratings of encoded rows ``x`` (T, Q, W) with per-task adapted params → (T, Q)."""
    return predict_embedded(model.decision, adapted, model.embed(x)) + model.offset(x)

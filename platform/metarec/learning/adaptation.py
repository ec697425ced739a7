"""Per-task adaptation of the decision layers, for a whole batch of tasks at once.

:func:`adapt` is the one adaptation function of MetaRec: meta-training differentiates through it,
evaluation and fine-tuning call it, and the serving layer calls it to adapt to a batch of
requests. The inner loop of every task runs together: ``torch.func.grad`` gives one task's
gradient, ``torch.func.vmap`` maps it over the task axis, and the decision MLP runs with each
task's own parameters through its one forward pass (:mod:`metarec.learning.scoring`, a pure
function of the parameters). Support sets are padded; the masked mean loss makes padded rows
contribute exactly zero to every gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.func import grad, vmap

from metarec.learning.model import DecisionLayers, MeLU
from metarec.learning.scoring import Linear, linear, score_preactivation

Params = dict[str, torch.Tensor]
LearningRate = float | Mapping[str, torch.Tensor]
History = list[tuple[torch.Tensor | None, torch.Tensor | None]]


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


class _Support(NamedTuple):
    """Embedded support sets: rows h (T, S, D), targets y (T, S), mask (T, S)."""

    h: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class _Settings:
    """Inner-loop settings: steps, rate (scalar or per parameter), first order or not."""

    steps: int
    lr: LearningRate
    first_order: bool


class _DualState(NamedTuple):
    """The closed-form inner loop's result, every tensor with a leading task axis (T, ...).

    Attributes:
        rest: The adapted parameters outside the closed form (the output unit's).
        first: A (T, S, H1): the first layer's weight moved by ``Aᵀ h``, its bias by ``Σ A``.
        history: Per later hidden layer, its inputs a (T, k·S, in) and updates b (T, k·S, out)
            of all k steps: its weight moved by ``bᵀ a``, its bias by ``Σ b``.
    """

    rest: Params
    first: torch.Tensor
    history: History


def _closed_form_applies(decision: DecisionLayers, lr: LearningRate) -> bool:
    """The closed-form (dual) inner loop needs one scalar rate and a first hidden layer."""
    return not isinstance(lr, Mapping) and len(decision.hidden) > 0


def adapt_embedded(
    decision: DecisionLayers,
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
    if steps == 0:
        n_tasks = h.shape[0]
        return {k: v.unsqueeze(0).expand(n_tasks, *v.shape) for k, v in start.items()}
    support = _Support(h, y, mask)
    if _closed_form_applies(decision, lr):
        settings = _Settings(steps, float(lr), first_order)  # type: ignore[arg-type]
        state = _inner_loop_dual(decision, start, support, settings)
        return _build_adapted(decision, start, h.detach() if first_order else h, state)
    return _inner_loop_plain(decision, start, support, _Settings(steps, lr, first_order))


def _inner_loop_plain(
    decision: DecisionLayers, start: Params, support: _Support, settings: _Settings
) -> Params:
    """The inner loop on every parameter: ``grad`` of one task's loss, ``vmap`` over tasks."""

    def task_loss(
        p: Params, h_t: torch.Tensor, y_t: torch.Tensor, m_t: torch.Tensor
    ) -> torch.Tensor:
        pred = decision.run(p, h_t)  # (S,)
        return masked_mse(pred, y_t, m_t)  # ()

    task_grad = grad(task_loss)

    def one_task(h_t: torch.Tensor, y_t: torch.Tensor, m_t: torch.Tensor) -> Params:
        p = start
        for _ in range(settings.steps):
            g = task_grad(p, h_t, y_t, m_t)
            if settings.first_order:
                g = {k: v.detach() for k, v in g.items()}
            p = {k: _step(p[k], g[k], _rate(settings.lr, k)) for k in p}
        return p

    return vmap(one_task)(support.h, support.y, support.mask)


def _plus_gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a bᵀ + 1`` for batches a (T, M, D), b (T, N, D) → (T, M, N); the 1 is the bias's share."""
    return torch.baddbmm(torch.ones((), dtype=a.dtype, device=a.device), a, b.transpose(1, 2))


def _inner_loop_dual(
    decision: DecisionLayers, start: Params, support: _Support, settings: _Settings
) -> _DualState:
    """The inner loop for a scalar rate, with every hidden layer tracked in closed form.

    The first layer's gradient on a support set is ``δᵀ h`` (δ: the loss gradient w.r.t. its
    pre-activations z, shape (S, H1)), so after any number of plain gradient steps its weight is
    ``W₀ + Aᵀ h`` and its bias ``b₀ + Σ A`` with ``A = −lr Σ δ`` (S, H1); the pre-activations of
    the support rows move by ``−lr (h hᵀ + 1) δ``. The inner loop therefore never materialises a
    per-task first-layer weight: z is computed once with the shared weight (one large matmul),
    each step costs an (S × S) Gram product instead of an (S × D × H1) one, and the adapted
    weight is built once at the end (or never: see :func:`adapt_and_predict_embedded`). Each
    later hidden layer is kept the same way, as the history of its inputs and updates (dual
    terms of :func:`~metarec.learning.scoring.score_preactivation`). ``torch.func.grad``
    differentiates the output unit, the pre-activations and a zero shift on each later layer's
    output (whose gradient is that layer's δ); ``vmap`` maps over tasks. Mathematically
    identical to the plain loop (the tests compare it with a per-task loop); padded rows have
    δ = 0 exactly.
    """
    layers = decision.layers(start)
    shared = decision.named(layers[:-1])  # the hidden layers: never per task
    rest = {k: v for k, v in start.items() if k not in shared}  # the output unit
    z0 = linear(layers[0], support.h)  # (T, S, H1) shared weight: one matmul
    gram = _plus_gram(support.h, support.h)  # (T, S, S)
    one_task = _dual_task(decision, shared, rest, settings)
    rest_t, first, history = vmap(one_task)(z0, gram, support.y, support.mask)
    return _DualState(rest_t, first, history)


def _dual_loss(decision: DecisionLayers, shared: Params) -> Callable[..., tuple]:
    """One task's support loss from first-layer pre-activations, later layers in dual form."""

    def task_loss(
        p: Params,
        z: torch.Tensor,
        shifts: list[torch.Tensor],
        history: History,
        y_t: torch.Tensor,
        m_t: torch.Tensor,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        inputs: list[torch.Tensor] = []
        dual = [(a, b, s) for (a, b), s in zip(history, shifts, strict=True)]
        later = decision.layers({**shared, **p})[1:]
        pred = score_preactivation(later, z, dual=dual, inputs=inputs)  # (S,)
        return masked_mse(pred, y_t, m_t), inputs  # (), n_later × (S, in)

    return task_loss


def _dual_task(
    decision: DecisionLayers, shared: Params, rest: Params, settings: _Settings
) -> Callable[..., tuple[Params, torch.Tensor, History]]:
    """One task's closed-form inner loop (to ``vmap``): returns its rest, A and history."""
    widths = [layer.out_features for layer in decision.hidden[1:]]  # the later hidden layers
    task_grad = grad(_dual_loss(decision, shared), argnums=(0, 1, 2), has_aux=True)
    lr = float(settings.lr)  # type: ignore[arg-type]

    def one_task(
        z: torch.Tensor, gram: torch.Tensor, y_t: torch.Tensor, m_t: torch.Tensor
    ) -> tuple[Params, torch.Tensor, History]:
        p, acc = rest, torch.zeros_like(z)  # A: (S, H1)
        history: History = [(None, None)] * len(widths)
        for _ in range(settings.steps):
            shifts = [torch.zeros_like(z[:, :1]).expand(-1, w).contiguous() for w in widths]
            (g, g_z, g_shifts), inputs = task_grad(p, z, shifts, history, y_t, m_t)
            if settings.first_order:
                g = {k: v.detach() for k, v in g.items()}
                g_z, g_shifts, inputs = g_z.detach(), _detached(g_shifts), _detached(inputs)
            p = {k: _step(p[k], g[k], lr) for k in p}
            step_z = g_z * -lr  # (S, H1)
            acc = acc + step_z
            z = z + gram @ step_z  # (S, H1)
            history = _extended(history, inputs, [g * -lr for g in g_shifts])
        return p, acc, history

    return one_task


def _detached(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach() for t in tensors]


def _extended(history: History, inputs: list[torch.Tensor], updates: list[torch.Tensor]) -> History:
    """Append one step's inputs (S, in) and updates (S, out) to each later layer's history."""
    return [
        (x if a is None else torch.cat([a, x]), u if b is None else torch.cat([b, u]))
        for (a, b), x, u in zip(history, inputs, updates, strict=True)
    ]  # (k·S, in), (k·S, out)


def _moved(layer: Linear, a: torch.Tensor, b: torch.Tensor) -> Linear:
    """A layer after the closed-form update: weight ``W + bᵀ a`` (T, out, in), bias ``b₀ + Σ b``."""
    weight, bias = layer  # (out, in), (out,)
    return torch.baddbmm(weight.unsqueeze(0), b.transpose(1, 2), a), bias + b.sum(1)


def _build_adapted(
    decision: DecisionLayers, start: Params, h: torch.Tensor, state: _DualState
) -> Params:
    """The adapted parameters (T, ...) of :func:`_inner_loop_dual`; builds each layer once."""
    layers = decision.layers(start)
    hidden = [_moved(layers[0], h, state.first)]  # (T, H1, D), (T, H1)
    for layer, (a, b) in zip(layers[1:-1], state.history, strict=True):
        hidden.append(_moved(layer, a, b))  # (T, out, in), (T, out)
    adapted = {**decision.named(hidden), **state.rest}
    return {k: adapted[k] for k in start}


def adapt_and_predict_embedded(
    decision: DecisionLayers,
    params: Mapping[str, torch.Tensor],
    h: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    h_query: torch.Tensor,
    *,
    steps: int,
    lr: LearningRate,
    first_order: bool = False,
) -> torch.Tensor:
    """``predict_embedded(decision, adapt_embedded(...), h_query)`` → (T, Q), for meta-training.

    With a scalar rate the query rows' first-layer pre-activations come from the dual form
    (``h_q W₀ᵀ + b₀ + (h_q hᵀ + 1) A``), so no per-task first-layer weight is ever built.
    """
    start = dict(params)
    if steps == 0 or not _closed_form_applies(decision, lr):
        adapted = adapt_embedded(
            decision, start, h, y, mask, steps=steps, lr=lr, first_order=first_order
        )
        return predict_embedded(decision, adapted, h_query)
    settings = _Settings(steps, float(lr), first_order)  # type: ignore[arg-type]
    state = _inner_loop_dual(decision, start, _Support(h, y, mask), settings)
    h_s = h.detach() if first_order else h
    layers = decision.layers(start)
    z_q = torch.baddbmm(linear(layers[0], h_query), _plus_gram(h_query, h_s), state.first)
    # z_q: (T, Q, H1) = h_q W₀ᵀ + b₀ + (h_q hᵀ + 1) A
    shared = decision.named(layers[:-1])

    def one_task(p: Params, z: torch.Tensor, history: History) -> torch.Tensor:
        dual = [(a, b, None) for a, b in history]
        return score_preactivation(decision.layers({**shared, **p})[1:], z, dual=dual)  # (Q,)

    return vmap(one_task)(state.rest, z_q, state.history)


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


def predict_embedded(decision: DecisionLayers, adapted: Params, h: torch.Tensor) -> torch.Tensor:
    """Predict with per-task parameters (T, ...) from embedded rows (T, Q, D) → (T, Q)."""

    def one_task(p: Params, h_t: torch.Tensor) -> torch.Tensor:
        return decision.run(p, h_t)  # (Q,)

    return vmap(one_task)(adapted, h)


def predict(model: MeLU, adapted: Params, x: torch.Tensor) -> torch.Tensor:
    """Predict ratings of encoded rows ``x`` (T, Q, W) with per-task adapted params → (T, Q)."""
    return predict_embedded(model.decision, adapted, model.embed(x)) + model.offset(x)

"""Per-task adaptation of the decision layers, for a whole batch of tasks at once.

:func:`adapt` is the one adaptation function of MetaRec: meta-training differentiates through it,
evaluation and fine-tuning call it, and the serving layer calls it to adapt to a batch of
requests. The inner loop of every task runs together: ``torch.func.grad`` gives one task's
gradient, ``torch.func.vmap`` maps it over the task axis, and the decision MLP runs with each
task's own parameters (:meth:`~metarec.learning.model.DecisionLayers.run`, a pure function of them).
Support sets are padded; the masked mean loss makes padded rows contribute exactly zero to every
gradient.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.func import grad, vmap

from metarec.learning.model import DecisionLayers, MeLU

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
    if steps > 0 and not isinstance(lr, Mapping) and _has_first_layer(decision, start):
        return _adapt_first_layer_closed_form(
            decision, start, h, y, mask, steps=steps, lr=float(lr), first_order=first_order
        )

    def task_loss(
        p: Params, h_t: torch.Tensor, y_t: torch.Tensor, m_t: torch.Tensor
    ) -> torch.Tensor:
        pred = decision.run(p, h_t)  # (S,)
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


FIRST_WEIGHT = "hidden.0.weight"
FIRST_BIAS = "hidden.0.bias"


def _has_first_layer(decision: DecisionLayers, params: Mapping[str, torch.Tensor]) -> bool:
    return len(decision.hidden) > 0 and FIRST_WEIGHT in params and FIRST_BIAS in params


def _inner_loop_dual(
    decision: DecisionLayers,
    start: Params,
    h: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    *,
    steps: int,
    lr: float,
    first_order: bool,
) -> tuple[Params, torch.Tensor]:
    """The inner loop for a scalar rate, with the first layer tracked in closed form.

    The first layer's gradient on a support set is ``δᵀ h`` (δ: the loss gradient w.r.t. its
    pre-activations z, shape (S, H1)), so after any number of plain gradient steps its weight is
    ``W₀ + Aᵀ h`` and its bias ``b₀ + Σ A`` with ``A = −lr Σ δ`` (S, H1); the pre-activations of
    the support rows move by ``−lr (h hᵀ + 1) δ``. The inner loop therefore never materialises a
    per-task first-layer weight: z is computed once with the shared weight (one large matmul),
    each step costs an (S × S) Gram product instead of an (S × D × H1) one, and the adapted
    weight is built once at the end (or never: see :func:`adapt_and_predict_embedded`).
    ``torch.func.grad`` differentiates the rest of the MLP and the pre-activations, ``vmap``
    maps over tasks. Mathematically identical to the plain loop (the tests compare it with a
    per-task loop); padded rows have δ = 0 exactly. Returns the other adapted parameters
    (T, ...) and A (T, S, H1).
    """
    w1, b1 = start[FIRST_WEIGHT], start[FIRST_BIAS]  # (H1, D), (H1,)
    n_later = len(decision.hidden) - 1  # hidden layers after the first, also in closed form
    shared = {k: v for k, v in start.items() if k.startswith("hidden.")}  # never per task
    rest = {k: v for k, v in start.items() if not k.startswith("hidden.")}  # the output layer
    z0 = torch.nn.functional.linear(h, w1, b1)  # (T, S, H1) shared weight: one matmul
    gram = torch.baddbmm(torch.ones((), dtype=h.dtype, device=h.device), h, h.transpose(1, 2))
    # gram: (T, S, S) = h hᵀ + 1 (the 1 is the bias's share)

    def task_loss(
        p: Params,
        z: torch.Tensor,
        shifts: list[torch.Tensor],
        history: list[tuple[torch.Tensor | None, torch.Tensor | None]],
        y_t: torch.Tensor,
        m_t: torch.Tensor,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        inputs: list[torch.Tensor] = []
        dual = [(a, b, s) for (a, b), s in zip(history, shifts, strict=True)]
        kwargs = {"preactivation": True, "dual": dual, "inputs": inputs}
        pred = decision.run({**shared, **p}, z, **kwargs)  # (S,)
        return masked_mse(pred, y_t, m_t), inputs  # (), n_later × (S, in)

    task_grad = grad(task_loss, argnums=(0, 1, 2), has_aux=True)

    def one_task(
        z: torch.Tensor, k_t: torch.Tensor, y_t: torch.Tensor, m_t: torch.Tensor
    ) -> tuple[Params, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        p = rest
        acc = None  # A: (S, H1)
        a_hist: list[list[torch.Tensor]] = [[] for _ in range(n_later)]  # steps × (S, in)
        b_hist: list[list[torch.Tensor]] = [[] for _ in range(n_later)]  # steps × (S, out)
        history: list[tuple[torch.Tensor | None, torch.Tensor | None]] = [(None, None)] * n_later
        for _ in range(steps):
            shifts = [
                torch.zeros_like(z[:, :1]).expand(-1, layer.out_features).contiguous()
                for layer in decision.hidden[1:]
            ]  # (S, out) each: their gradients are the later layers' δ
            (g, g_z, g_shifts), inputs = task_grad(p, z, shifts, history, y_t, m_t)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
                g_z = g_z.detach()
                g_shifts = [v.detach() for v in g_shifts]
                inputs = [v.detach() for v in inputs]
            p = {k: _step(p[k], g[k], lr) for k in p}
            step_z = g_z * -lr  # (S, H1)
            acc = step_z if acc is None else acc + step_z
            z = z + k_t @ step_z  # (S, H1)
            for i in range(n_later):
                a_hist[i].append(inputs[i])  # (S, in): the layer's input at this step
                b_hist[i].append(g_shifts[i] * -lr)  # (S, out)
            history = [
                (torch.cat(a_hist[i]), torch.cat(b_hist[i])) for i in range(n_later)
            ]  # (k·S, in), (k·S, out)
        a_out = [a for a, _ in history]
        b_out = [b for _, b in history]
        return p, acc, a_out, b_out

    return vmap(one_task)(z0, gram, y, mask)  # acc: (T, S, H1); histories (T, steps·S, ·)


def _adapt_first_layer_closed_form(
    decision: DecisionLayers,
    start: Params,
    h: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    *,
    steps: int,
    lr: float,
    first_order: bool,
) -> Params:
    """:func:`adapt_embedded` through :func:`_inner_loop_dual`; builds the first layer once."""
    adapted, acc, a_hist, b_hist = _inner_loop_dual(
        decision, start, h, y, mask, steps=steps, lr=lr, first_order=first_order
    )
    h_w = h.detach() if first_order else h  # first order: the whole inner gradient is constant
    w1, b1 = start[FIRST_WEIGHT], start[FIRST_BIAS]  # (H1, D), (H1,)
    adapted[FIRST_WEIGHT] = torch.baddbmm(w1.unsqueeze(0), acc.transpose(1, 2), h_w)  # (T, H1, D)
    adapted[FIRST_BIAS] = b1 + acc.sum(1)  # (T, H1)
    for i, (a, b) in enumerate(zip(a_hist, b_hist, strict=True), start=1):
        w, bias = start[f"hidden.{i}.weight"], start[f"hidden.{i}.bias"]  # (out, in), (out,)
        adapted[f"hidden.{i}.weight"] = torch.baddbmm(w.unsqueeze(0), b.transpose(1, 2), a)
        adapted[f"hidden.{i}.bias"] = bias + b.sum(1)  # (T, out)
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
    if steps == 0 or isinstance(lr, Mapping) or not _has_first_layer(decision, start):
        adapted = adapt_embedded(
            decision, start, h, y, mask, steps=steps, lr=lr, first_order=first_order
        )
        return predict_embedded(decision, adapted, h_query)
    adapted, acc, a_hist, b_hist = _inner_loop_dual(
        decision, start, h, y, mask, steps=steps, lr=float(lr), first_order=first_order
    )
    h_s = h.detach() if first_order else h
    cross = torch.baddbmm(
        torch.ones((), dtype=h.dtype, device=h.device), h_query, h_s.transpose(1, 2)
    )  # (T, Q, S) = h_q hᵀ + 1
    z_q = torch.nn.functional.linear(h_query, start[FIRST_WEIGHT], start[FIRST_BIAS])  # (T, Q, H1)
    z_q = torch.baddbmm(z_q, cross, acc)  # (T, Q, H1)

    shared = {k: v for k, v in start.items() if k.startswith("hidden.")}

    def one_task(
        p: Params, z: torch.Tensor, a_t: list[torch.Tensor], b_t: list[torch.Tensor]
    ) -> torch.Tensor:
        dual = [(a, b, None) for a, b in zip(a_t, b_t, strict=True)]
        kwargs = {"preactivation": True, "dual": dual}
        return decision.run({**shared, **p}, z, **kwargs)  # (Q,)

    return vmap(one_task)(adapted, z_q, a_hist, b_hist)


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

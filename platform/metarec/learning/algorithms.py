"""Meta-learning algorithms: one outer step on a batch of tasks.

* ``maml``: second-order MAML; the meta-gradient flows through the inner updates.
* ``fomaml``: first-order MAML; inner gradients are constants.
* ``reptile``: adapt on support ∪ query, move the decision layers toward the adapted weights
  (pseudo-gradient ``(θ − θ̃) / (lr · steps)``); the embeddings get the first-order gradient of the
  adapted loss, since Reptile's rule alone would never move them.
* ``metasgd``: second-order MAML with a learnable inner rate per decision parameter element.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import torch

from metarec.learning.adaptation import (
    adapt_and_predict_embedded,
    adapt_embedded,
    masked_mse,
    predict_embedded,
)
from metarec.learning.model import MeLU
from metarec.learning.tasks import TaskBatch


class Algorithm(StrEnum):
    """Supported meta-learning algorithms."""

    MAML = "maml"
    FOMAML = "fomaml"
    REPTILE = "reptile"
    METASGD = "metasgd"


@dataclass(frozen=True)
class InnerLoop:
    """Inner-loop settings shared by training, evaluation and serving."""

    steps: int = 5
    lr: float = 0.01


def meta_loss(
    model: MeLU, batch: TaskBatch, *, inner: InnerLoop, first_order: bool = False
) -> torch.Tensor:
    """Mean query loss after adapting to each task's support set (differentiable).

    Args:
        model: The model being meta-trained.
        batch: Tasks.
        inner: Inner-loop steps and rate (ignored rate under Meta-SGD: the model's rates).
        first_order: First-order approximation.

    Returns:
        Scalar loss averaged over real query examples of all tasks.
    """
    lr = model.inner_lr() or inner.lr
    h_s = model.embed(batch.support_x)  # (T, S, D)
    h_q = model.embed(batch.query_x)  # (T, Q, D)
    pred = adapt_and_predict_embedded(
        model.decision,
        model.decision_params(),
        h_s,
        batch.support_y - model.offset(batch.support_x),
        batch.support_mask,
        h_q,
        steps=inner.steps,
        lr=lr,
        first_order=first_order,
    ) + model.offset(batch.query_x)  # (T, Q)
    return masked_mse(pred, batch.query_y, batch.query_mask)


def reptile_gradients(model: MeLU, batch: TaskBatch, *, inner: InnerLoop) -> torch.Tensor:
    """Set Reptile's pseudo-gradients on ``model`` (``.grad``); return the adapted loss."""
    h_s = model.embed(batch.support_x)  # (T, S, D)
    h_q = model.embed(batch.query_x)  # (T, Q, D)
    h = torch.cat([h_s, h_q], dim=1)  # (T, S+Q, D)
    y = torch.cat([batch.support_y, batch.query_y], dim=1)  # (T, S+Q)
    offset = model.offset(torch.cat([batch.support_x, batch.query_x], dim=1))  # (T, S+Q)
    mask = torch.cat([batch.support_mask, batch.query_mask], dim=1)  # (T, S+Q)
    params = {k: v.detach() for k, v in model.decision_params().items()}
    adapted = adapt_embedded(
        model.decision,
        params,
        h.detach(),
        y - offset.detach(),
        mask,
        steps=inner.steps,
        lr=inner.lr,
        first_order=True,
    )
    adapted = {k: v.detach() for k, v in adapted.items()}
    loss = masked_mse(predict_embedded(model.decision, adapted, h) + offset, y, mask)
    loss.backward()  # embeddings only: the adapted params are constants
    scale = 1.0 / (inner.lr * max(inner.steps, 1))
    for name, p in model.decision_params().items():
        p.grad = (p.detach() - adapted[name].mean(0)) * scale
    return loss.detach()


@dataclass(frozen=True)
class MeanCounts:
    """What a meta-step's loss and each parameter's gradient on a batch are means over.

    A meta-batch split across processes weights each part's gradient by its share of these
    counts, so that the combined gradient is the mean over the whole meta-batch.

    Attributes:
        loss: Real examples the reported loss averages over.
        params: Per parameter name (as in ``named_parameters``), what its gradient averages
            over: real query ratings (MAML, FOMAML, Meta-SGD); for Reptile, tasks (the decision
            layers' pseudo-gradient) or real support and query ratings (the other parameters).
    """

    loss: float
    params: dict[str, float]


def mean_counts(model: MeLU, batch: TaskBatch, *, algorithm: Algorithm) -> MeanCounts:
    """The :class:`MeanCounts` of a :func:`meta_step` of ``algorithm`` on ``batch``."""
    query = float(batch.query_mask.sum())
    names = [name for name, _ in model.named_parameters()]
    if algorithm is not Algorithm.REPTILE:
        return MeanCounts(loss=query, params=dict.fromkeys(names, query))
    both = query + float(batch.support_mask.sum())
    tasks = float(batch.n_tasks)
    return MeanCounts(
        loss=both, params={n: tasks if n.startswith("decision.") else both for n in names}
    )


# Combines this process's gradients (set on the model) and loss on its part of the meta-batch
# with the other processes'; returns the whole meta-batch's loss (distributed training).
GradientSync = Callable[[MeLU, TaskBatch, torch.Tensor], torch.Tensor]


def meta_step(
    model: MeLU,
    optimizer: torch.optim.Optimizer,
    batch: TaskBatch,
    *,
    algorithm: Algorithm,
    inner: InnerLoop,
    max_grad_norm: float | None = 10.0,
    sync: GradientSync | None = None,
) -> float:
    """One outer update on ``batch``; returns the meta-loss (query MSE after adaptation).

    Args:
        model: The model being meta-trained.
        optimizer: Its outer optimizer.
        batch: Tasks (with ``sync``: this process's part of the meta-batch).
        algorithm: The meta-learning algorithm.
        inner: Inner-loop steps and rate.
        max_grad_norm: Clip the (combined) gradient to this norm (None: no clipping).
        sync: Called once the gradients are set, before clipping: distributed training
            all-reduces them there, so every process clips and steps on the same gradient.
    """
    optimizer.zero_grad(set_to_none=True)
    if algorithm is Algorithm.REPTILE:
        loss = reptile_gradients(model, batch, inner=inner)
    else:
        loss = meta_loss(model, batch, inner=inner, first_order=algorithm is Algorithm.FOMAML)
        loss.backward()
    if sync is not None:
        loss = sync(model, batch, loss.detach())
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if model.inner_lrs is not None:
        with torch.no_grad():
            for rate in model.inner_lrs.values():
                rate.clamp_(min=0.0)
    return float(loss.detach())

"""The inner loop of the factor fold-in: fit a user's ``θ`` to a support set, batched over tasks.

Each task's loss is ``L(θ) = Σ_s m_s (r̃_s − z_s · θ)² + Σ_d λ_d (θ_d − m_d)²`` (masked design rows
``z``, residual ratings ``r̃``, prior mean ``m`` and precision ``λ``). :func:`map_fold_in` solves
it in closed form (the posterior mode, a ``D``-square ridge solve per task); :func:`sgd_fold_in`
takes Meta-SGD steps on ``L / (n + 1)`` (:func:`fold_in_loss`) from the prior mean. Both are
differentiable in every input; :class:`~metarec.learning.factor_model.FactorModel` calls them.
"""

from __future__ import annotations

import torch
from torch.func import grad, vmap


def map_fold_in(
    z: torch.Tensor, target: torch.Tensor, prior: torch.Tensor, precision: torch.Tensor
) -> torch.Tensor:
    """Posterior mode of ``θ`` under ``target ≈ z θ`` with prior ``N(prior, diag(1/precision))``.

    Args:
        z: Masked design rows (T, S, D) (padded rows all zero).
        target: Masked residual ratings (T, S).
        prior: Prior means (T, D).
        precision: Prior precisions (D,) or (T, D).

    Returns:
        ``(zᵀz + diag λ)⁻¹ (zᵀ target + λ ⊙ prior)``, shape (T, D).
    """
    gram = z.transpose(-1, -2) @ z + torch.diag_embed(precision.expand_as(prior))  # (T, D, D)
    rhs = (z * target.unsqueeze(-1)).sum(-2) + precision * prior  # (T, D)
    return torch.linalg.solve(gram, rhs)  # (T, D)


def fold_in_loss(
    theta: torch.Tensor,
    z: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    prior: torch.Tensor,
    precision: torch.Tensor,
) -> torch.Tensor:
    """One task's inner loss ``(Σ m (r̃ − z θ)² + Σ λ (θ − prior)²) / (n + 1)`` → ().

    Args:
        theta: The user's vector (D,).
        z: Masked design rows (S, D).
        target: Masked residuals (S,).
        mask: Support mask (S,).
        prior: Prior mean (D,).
        precision: Prior precision (D,).
    """
    err = (target - z @ theta) * mask  # (S,)
    penalty = (precision * (theta - prior) ** 2).sum()  # ()
    return ((err**2).sum() + penalty) / (mask.sum() + 1.0)


def sgd_fold_in(
    z: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    prior: torch.Tensor,
    precision: torch.Tensor,
    rates: torch.Tensor,
    *,
    steps: int,
) -> torch.Tensor:
    """``steps`` Meta-SGD steps on :func:`fold_in_loss` from the prior mean, batched over tasks.

    Args:
        z: Masked design rows (T, S, D).
        target: Masked residuals (T, S).
        mask: Support mask (T, S).
        prior: Prior means, the starting points (T, D).
        precision: Prior precisions (D,).
        rates: Per-dimension step sizes (D,).
        steps: Gradient steps (0 returns the prior mean).

    Returns:
        Adapted ``θ`` (T, D); differentiable (second order) in every input.
    """
    per_task = 0 if precision.dim() == 2 else None
    task_grad = vmap(grad(fold_in_loss), in_dims=(0, 0, 0, 0, 0, per_task))
    theta = prior  # (T, D)
    for _ in range(steps):
        theta = theta - rates * task_grad(theta, z, target, mask, prior, precision)  # (T, D)
    return theta

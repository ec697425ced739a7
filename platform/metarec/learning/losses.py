"""Losses shared by the model heads and the algorithms."""

from __future__ import annotations

import torch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the examples where ``mask`` is 1 (0 when there are none)."""
    return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)

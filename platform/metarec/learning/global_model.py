"""The non-meta baseline: the same model trained on all training ratings by plain regression."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from metarec.learning.model import MeLU


def fit_global(
    model: MeLU,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, float], None] | None = None,
) -> MeLU:
    """Train ``model`` in place with AdamW on (x, y) minibatches (MSE); return it.

    Args:
        model: Model to train.
        x: Encoded rows, shape (N, W).
        y: Ratings, shape (N,).
        epochs: Passes over the data.
        batch_size: Rows per step.
        lr: Adam learning rate.
        weight_decay: AdamW decoupled weight decay.
        seed: Shuffling seed.
        device: Where to train.
        on_epoch: Called with (epoch, mean loss) after each epoch.
    """
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)  # (N, W) codes and dense
    yt = torch.as_tensor(y, dtype=torch.float32, device=device)  # (N,)
    model.train()
    for epoch in range(epochs):
        order = torch.as_tensor(rng.permutation(len(y)), device=device)
        total = 0.0
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(xt[idx]), yt[idx])  # ()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        if on_epoch is not None:
            on_epoch(epoch, total / max(len(y), 1))
    return model

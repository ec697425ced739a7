"""Progress reports of a training run (what ``metarec train`` shows while it works)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """One report from the training loop."""

    phase: str  # "global", "meta", "factor", "ranker", "evaluate"
    step: int
    total: int
    meta_loss: float | None = None
    val_mae: float | None = None
    val_ndcg: float | None = None  # the ranker's validation NDCG@20, when it was just measured


ProgressCallback = Callable[[ProgressEvent], None]

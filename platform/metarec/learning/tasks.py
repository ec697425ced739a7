"""Tasks (one user each: a support set and a query set) and padded, masked task batches.

Support and query sets are ragged (users differ in how many ratings they have); a
:class:`TaskBatch` pads them to the longest in the batch and carries 0/1 masks. Every loss and
metric weights examples by the mask, so padding changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass(frozen=True)
class Task:
    """One user's few-shot problem.

    Attributes:
        user_id: The user.
        support_x: Encoded support rows, shape (S, input_width), float32.
        support_y: Support ratings, shape (S,).
        support_items: Item ids of the support rows, shape (S,).
        query_x: Encoded query rows, shape (Q, input_width).
        query_y: Query ratings, shape (Q,).
        query_items: Item ids of the query rows, shape (Q,).
    """

    user_id: int
    support_x: np.ndarray
    support_y: np.ndarray
    support_items: np.ndarray
    query_x: np.ndarray
    query_y: np.ndarray
    query_items: np.ndarray


@dataclass(frozen=True)
class TaskBatch:
    """A batch of tasks, padded to the longest support and query set.

    Shapes: ``T`` tasks, ``S`` max support size, ``Q`` max query size, ``W`` input width.
    """

    support_x: torch.Tensor  # (T, S, W) float32 (codes and dense columns)
    support_y: torch.Tensor  # (T, S) float32
    support_mask: torch.Tensor  # (T, S) float32, 1 = real example
    query_x: torch.Tensor  # (T, Q, W) float32
    query_y: torch.Tensor  # (T, Q) float32
    query_mask: torch.Tensor  # (T, Q) float32

    def to(self, device: torch.device | str) -> TaskBatch:
        """The same batch on ``device``."""
        return TaskBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def n_tasks(self) -> int:
        """Number of tasks ``T``."""
        return int(self.support_x.shape[0])


def _pad(
    arrays: Sequence[np.ndarray], length: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    first = arrays[0]
    out = np.zeros((len(arrays), length, *first.shape[1:]), dtype=dtype)
    mask = np.zeros((len(arrays), length), dtype=np.float32)
    for i, array in enumerate(arrays):
        out[i, : len(array)] = array
        mask[i, : len(array)] = 1.0
    return out, mask


def collate(tasks: Sequence[Task], *, pad_to: tuple[int, int] | None = None) -> TaskBatch:
    """Pad ``tasks`` into one :class:`TaskBatch`.

    Args:
        tasks: At least one task.
        pad_to: Optional minimum (support, query) lengths, e.g. to test that padding is inert.

    Returns:
        The padded batch (CPU tensors).
    """
    if not tasks:
        raise ValueError("collate needs at least one task")
    s_len = max(len(t.support_y) for t in tasks)
    q_len = max(len(t.query_y) for t in tasks)
    if pad_to is not None:
        s_len, q_len = max(s_len, pad_to[0]), max(q_len, pad_to[1])
    s_len = max(s_len, 1)  # a task with an empty support set still gets one (masked) slot
    sx, smask = _pad([t.support_x for t in tasks], s_len, np.float32)
    sy, _ = _pad([t.support_y for t in tasks], s_len, np.float32)
    qx, qmask = _pad([t.query_x for t in tasks], q_len, np.float32)
    qy, _ = _pad([t.query_y for t in tasks], q_len, np.float32)
    return TaskBatch(
        support_x=torch.from_numpy(sx),
        support_y=torch.from_numpy(sy),
        support_mask=torch.from_numpy(smask),
        query_x=torch.from_numpy(qx),
        query_y=torch.from_numpy(qy),
        query_mask=torch.from_numpy(qmask),
    )


def batches(tasks: Sequence[Task], size: int) -> list[list[Task]]:
    """Split ``tasks`` into consecutive chunks of at most ``size``."""
    return [list(tasks[i : i + size]) for i in range(0, len(tasks), size)]

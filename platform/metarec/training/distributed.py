"""Distributed meta-training under ``torchrun``: ranks, process group, all-reduce, rank 0's work.

``torchrun --nnodes=N --nproc-per-node=G -m metarec train …`` starts ``N × G`` processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``) in their
environment. :meth:`Ranks.from_environment` reads them; :func:`process_group` joins the group
(``gloo`` on CPU, ``nccl`` on CUDA, device ``cuda:LOCAL_RANK``) for the run and leaves it after.
Without ``WORLD_SIZE`` > 1 every operation here is a no-op, so the single-process run is the
same code.

What the meta-training loop needs from the group:

* :meth:`Ranks.part_of`: every rank draws the same global meta-batch from the seeded task
  stream (keyed by the global step, never by rank) and keeps its contiguous, disjoint part;
* :meth:`Ranks.gradient_sync`: one ``all_reduce`` (SUM) of every gradient weighted by this
  rank's share of what the single-process mean averages over (:func:`~metarec.learning.
  algorithms.mean_counts`), so that the sum is the whole meta-batch's mean even for uneven
  parts; every rank then clips and steps on the same gradient;
* :meth:`Ranks.from_main`, :meth:`Ranks.broadcast_weights`, :meth:`Ranks.file_from_main`:
  rank 0 validates, writes checkpoints and the artifact; the others receive its result, its
  weights and its checkpoint file (so no storage needs to be shared between nodes).

The explicit all-reduce is used instead of ``DistributedDataParallel``: DDP's reducer hooks
the module's ``forward`` and accumulates through ``.backward()`` only, while the inner loop
here runs the decision layers functionally (``functional_call`` + ``grad`` + ``vmap``), Reptile
sets its pseudo-gradients by hand, and uneven parts need per-parameter weights that DDP's
plain average cannot express.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

from metarec.errors import ConfigError
from metarec.learning.algorithms import Algorithm, GradientSync, mean_counts
from metarec.learning.model import MeLU
from metarec.learning.tasks import TaskBatch

T = TypeVar("T")

# Rank 0 evaluates, fits the other models and writes the artifact while the rest wait.
DEFAULT_TIMEOUT = timedelta(hours=2)
CPU = torch.device("cpu")


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is rank 0 of its job (or the only process)."""
    env = os.environ if environ is None else environ
    return int(env.get("RANK", "0")) == 0


def part_bounds(n: int, *, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous part of ``n`` items.

    Parts differ in size by at most one, are disjoint, and in rank order cover ``0..n``.
    """
    return n * rank // world_size, n * (rank + 1) // world_size


@dataclass(frozen=True)
class Ranks:
    """This process's place in a (possibly one-process) training job.

    Attributes:
        rank: Global rank (0: the one that writes).
        world_size: Processes in the job.
        local_rank: Rank on this node (picks the GPU).
        device: Where this rank trains (``cuda:local_rank`` on CUDA).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = CPU

    @classmethod
    def from_environment(
        cls, device: torch.device, *, environ: Mapping[str, str] | None = None
    ) -> Ranks:
        """The ranks ``torchrun`` set (none: one process) and this rank's device.

        Args:
            device: The device the config resolves to; CUDA becomes ``cuda:LOCAL_RANK``.
            environ: The environment (default ``os.environ``).
        """
        env = os.environ if environ is None else environ
        world = int(env.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=device)
        local = int(env.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local)
        return cls(rank=int(env["RANK"]), world_size=world, local_rank=local, device=device)

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: validates, writes checkpoints and the artifact, reports progress."""
        return self.rank == 0

    def part_of(self, items: Sequence[T]) -> list[T]:
        """This rank's part of the global ``items`` (all of them in one process).

        Raises:
            ConfigError: Fewer items than processes (a rank would have no task).
        """
        if len(items) < self.world_size:
            raise ConfigError(
                f"A meta-batch of {len(items)} tasks cannot be split over "
                f"{self.world_size} processes: every process needs at least one task.",
                fix="raise meta_batch_size (and the users to draw from), or start fewer "
                "processes (torchrun --nproc-per-node / --nnodes).",
            )
        start, stop = part_bounds(len(items), rank=self.rank, world_size=self.world_size)
        return list(items[start:stop])

    def gradient_sync(self, algorithm: Algorithm) -> GradientSync | None:
        """The all-reduce that :func:`~metarec.learning.algorithms.meta_step` calls (or None)."""
        if not self.distributed:
            return None

        def sync(model: MeLU, batch: TaskBatch, loss: torch.Tensor) -> torch.Tensor:
            return all_reduce_mean(model, batch, loss, algorithm=algorithm)

        return sync

    def barrier(self) -> None:
        """Wait until every rank arrives (no-op in one process)."""
        if self.distributed:
            dist.barrier()

    def broadcast_weights(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""
        if not self.distributed:
            return
        with torch.no_grad():
            for tensor in model.state_dict().values():
                dist.broadcast(tensor, src=0)

    def from_main(self, work: Callable[[], float]) -> float:
        """Run ``work`` on rank 0 alone; every rank returns its result (a float)."""
        if not self.distributed:
            return work()
        value = torch.tensor([work() if self.is_main else 0.0], dtype=torch.float64)
        value = value.to(self.device)
        dist.broadcast(value, src=0)
        return float(value.item())

    def bytes_from_main(self, data: bytes | None) -> bytes | None:
        """Rank 0's ``data`` (None: absent) on every rank; the others' argument is ignored."""
        if not self.distributed:
            return data
        size = torch.tensor([-1 if data is None else len(data)], dtype=torch.int64)
        size = size.to(self.device)
        dist.broadcast(size, src=0)
        n = int(size.item())
        if n <= 0:
            return None if n < 0 else b""
        if self.is_main and data is not None:
            payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        else:
            payload = torch.empty(n, dtype=torch.uint8)
        payload = payload.to(self.device)
        dist.broadcast(payload, src=0)
        return data if self.is_main else payload.cpu().numpy().tobytes()

    @contextmanager
    def file_from_main(self, path: Path) -> Iterator[Path]:
        """``path`` as rank 0 sees it: rank 0's own file, elsewhere a private copy of its bytes.

        The copy (same file name, in a temporary folder) is removed on exit; where rank 0 has no
        file, the yielded path does not exist either.
        """
        if not self.distributed:
            yield path
            return
        data = self.bytes_from_main(path.read_bytes() if self.is_main and path.is_file() else None)
        if self.is_main:
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="metarec-rank-") as folder:
            copy = Path(folder) / path.name
            if data is not None:
                copy.write_bytes(data)
            yield copy


def all_reduce_mean(
    model: MeLU, batch: TaskBatch, loss: torch.Tensor, *, algorithm: Algorithm
) -> torch.Tensor:
    """Turn this rank's mean gradients and loss on ``batch`` into the global batch's means.

    Each gradient (and the loss) is a mean over this rank's part; times its count it is a sum.
    One ``all_reduce`` (SUM) adds the sums and the counts of every rank; sum / count is the mean
    the single process computes over the whole meta-batch. Parameters without a gradient (the
    same ones on every rank: one graph) are left alone.

    Returns:
        The global meta-batch's loss; the gradients on ``model`` are replaced by the global ones.
    """
    counts = mean_counts(model, batch, algorithm=algorithm)
    params = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
    weights = torch.tensor([counts.params[n] for n, _ in params] + [counts.loss])
    weights = weights.to(device=loss.device, dtype=loss.dtype)
    sums = [p.grad.reshape(-1) * w for (_, p), w in zip(params, weights[:-1], strict=True)]
    flat = torch.cat([*sums, (loss * weights[-1]).reshape(1), weights])  # (n_grad + 1 + n_w,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    totals = flat[-len(weights) :].clamp(min=1.0)  # (n_params + 1,)
    offset = 0
    for i, (_, p) in enumerate(params):
        n = p.grad.numel()
        p.grad.copy_((flat[offset : offset + n] / totals[i]).view_as(p.grad))
        offset += n
    return flat[offset] / totals[-1]


@contextmanager
def process_group(ranks: Ranks, *, timeout: timedelta = DEFAULT_TIMEOUT) -> Iterator[Ranks]:
    """Join the job's process group for the block (no-op in one process), then leave it.

    ``gloo`` on CPU, ``nccl`` on CUDA (after selecting ``cuda:LOCAL_RANK``). A group already
    initialised by the caller is used as it is and left alone on exit.

    Args:
        ranks: This process's ranks (:meth:`Ranks.from_environment`).
        timeout: How long a rank waits in a collective (rank 0 alone evaluates and writes the
            artifact while the others wait).
    """
    if not ranks.distributed or dist.is_initialized():
        yield ranks
        return
    cuda = ranks.device.type == "cuda"
    if cuda:
        torch.cuda.set_device(ranks.device)
    dist.init_process_group(
        backend="nccl" if cuda else "gloo",
        rank=ranks.rank,
        world_size=ranks.world_size,
        timeout=timeout,
        **({"device_id": ranks.device} if cuda else {}),
    )
    try:
        yield ranks
    finally:
        dist.destroy_process_group()

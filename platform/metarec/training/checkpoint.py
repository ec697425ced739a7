"""Training checkpoints: one ``safetensors`` file, written atomically every N steps.

It holds the model, the best model so far, the optimizer state and (in its metadata, as JSON)
the step, early-stopping state and the run key. Task sampling is seeded by (seed, step), so a
run resumed from step ``k`` does exactly what the uninterrupted run did after step ``k``. It
holds no rank state and the run key ignores the world size: a checkpoint written by rank 0 of a
``torchrun`` job resumes in one process, and the other way round.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from metarec.errors import CheckpointError
from metarec.training.config import TrainingConfig
from metarec.training.meta_loop import BestOnValidation, Weights

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class TrainState:
    """Progress of a meta-training run."""

    step: int = 0
    best_val_mae: float = float("inf")
    best_step: int = 0
    bad_evals: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def best_on_validation(self, weights: Weights | None, *, patience: int) -> BestOnValidation:
        """The early-stopping record of this state (validation MAE, lower is better)."""
        return BestOnValidation(
            min_delta=1e-5,
            patience=patience,
            to_cpu=True,
            best=self.best_val_mae,
            best_step=self.best_step,
            bad_evals=self.bad_evals,
            weights=weights,
        )

    def record(self, keeper: BestOnValidation, *, improved: bool) -> None:
        """Copy ``keeper``'s record after a validation; stop early once it is exhausted."""
        self.best_val_mae, self.best_step, self.bad_evals = (
            keeper.best,
            keeper.best_step,
            keeper.bad_evals,
        )
        if not improved:
            self.stopped_early = keeper.exhausted


@dataclass(frozen=True)
class Checkpointing:
    """Where a run writes its checkpoints, and the key that a resumed run must match."""

    directory: Path
    run_key: str


def run_key(config: TrainingConfig, fingerprint: str) -> str:
    """Identity of a run for resuming: the config (minus device) and the data fingerprint."""
    payload = config.model_dump(mode="json", exclude={"device"})
    return hashlib.sha256(json.dumps([payload, fingerprint], sort_keys=True).encode()).hexdigest()


def save_checkpoint(
    directory: Path,
    *,
    run_key: str,
    state: TrainState,
    model: torch.nn.Module,
    best: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
) -> Path:
    """Write the checkpoint atomically; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if best is not None:
        tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best.items()})
    opt = optimizer.state_dict()
    for pid, values in opt["state"].items():
        for key, value in values.items():
            tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {
        "run_key": run_key,
        "state": state.__dict__,
        "param_groups": opt["param_groups"],
    }
    path = directory / CHECKPOINT
    tmp = directory / f".{CHECKPOINT}.tmp"
    save_file(tensors, str(tmp), metadata={"metarec": json.dumps(meta)})
    os.replace(tmp, path)
    return path


def load_checkpoint(
    directory: Path,
    *,
    run_key: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> tuple[TrainState, dict[str, torch.Tensor] | None] | None:
    """Restore model and optimizer from ``directory``; None when there is no checkpoint.

    Raises:
        CheckpointError: The file is unreadable or belongs to another run (config or data).
    """
    path = directory / CHECKPOINT
    if not path.is_file():
        return None
    fix = f"delete {path} to start over, or pass the same config and training set to resume."
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta: dict[str, Any] = json.loads((handle.metadata() or {})["metarec"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc}).", fix=fix) from exc
    if meta.get("run_key") != run_key:
        raise CheckpointError(
            f"{path}: checkpoint of a different run (config or training set changed).", fix=fix
        )
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    return TrainState(**meta["state"]), best

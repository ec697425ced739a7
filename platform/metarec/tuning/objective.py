"""One trial: train with the trial's values, report the validation metric, prune, score.

A trial runs the ordinary training entry point (:func:`metarec.training.trainer.train`) on the
base configuration with the tuning file's ``trial`` budget and the sampled parameters on top.
For the rating objective, every meta-training validation reports the best validation MAE so far
to Optuna (step = the meta-training step); when the pruner says so, :class:`optuna.TrialPruned`
is raised from the progress callback and the run stops there. The trial's value is the
validation users' best MAE (what early stopping keeps), or for the ranker objective the best
validation NDCG@20 of the meta-learned ranker; test users are never looked at.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from metarec.features.training_set import Location
from metarec.training.config import TrainingConfig
from metarec.training.model_card import ModelCard
from metarec.training.progress import ProgressEvent
from metarec.training.trainer import train
from metarec.tuning.space import config_values
from metarec.tuning.spec import Objective, TuningSpec

WORKER_ATTR = "worker"  # trial user attribute: which worker ran it (host:pid)


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study shares.

    Attributes:
        spec: The tuning file.
        base: The base training configuration (``--config``, else the defaults).
        training_set: The validated training set (path or URI).
        workdir: Where trials write their (temporary) artifacts.
        worker: This worker's name, recorded on each trial it runs.
    """

    spec: TuningSpec
    base: TrainingConfig
    training_set: Location
    workdir: Path
    worker: str = ""

    def trial_config(self, params: dict[str, Any]) -> TrainingConfig:
        """The base config, the trial budget, then ``params`` on top."""
        values = self.base.model_dump(mode="json", exclude_unset=True)
        values.update(self.spec.trial_values())
        values.update(config_values(params, self.base))
        return TrainingConfig.build(values, source="trial parameters")

    def final_config(self, params: dict[str, Any]) -> TrainingConfig:
        """The base config with ``params`` on top (no trial budget): what the best re-trains."""
        values = self.base.model_dump(mode="json", exclude_unset=True)
        values.update(config_values(params, self.base))
        return TrainingConfig.build(values, source="best parameters")


def objective_value(card: ModelCard, objective: Objective) -> float:
    """A finished trial's value from its model card (validation users only)."""
    if objective is Objective.VAL_MAE:
        best = card.training.get("best_val_mae")
        return math.nan if best is None else float(best)
    history = ((card.ranker or {}).get("history") or {}).get("meta_ranker") or []
    scores = [float(h["val_ndcg@20"]) for h in history if h.get("val_ndcg@20") is not None]
    return max(scores) if scores else math.nan


class PruningReporter:
    """A training progress callback that reports to ``trial`` and prunes when told.

    ``val_mae``: every meta-training validation (phase ``meta``, every ``eval_every`` steps)
    reports the best validation MAE so far. ``val_ndcg@20``: every ranker validation that
    carries ``val_ndcg`` (phase ``ranker``) reports the best NDCG@20 so far; progress events
    without that field report nothing (the trial is then scored at its end, unpruned).
    """

    def __init__(self, trial: optuna.Trial, *, objective: Objective, eval_every: int) -> None:
        """Report ``objective`` of ``trial`` at every validation (every ``eval_every`` steps)."""
        self.trial = trial
        self.objective = objective
        self.eval_every = eval_every
        self.best: float | None = None

    def __call__(self, event: ProgressEvent) -> None:
        """Report a validation's best-so-far value; raise TrialPruned to stop the run."""
        score = self._score(event)
        if score is None:
            return
        better = min if self.objective is Objective.VAL_MAE else max
        self.best = score if self.best is None else better(self.best, score)
        self.trial.report(self.best, step=event.step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {event.step} (best {self.best:.4f})")

    def _score(self, event: ProgressEvent) -> float | None:
        if self.objective is Objective.VAL_MAE:
            due = event.phase == "meta" and event.step % self.eval_every == 0
            return float(event.val_mae) if due and event.val_mae is not None else None
        score = getattr(event, "val_ndcg", None)  # reported by rankers that validate
        return float(score) if event.phase == "ranker" and score is not None else None


def run_trial(trial: optuna.Trial, setup: TrialSetup, params: dict[str, Any]) -> float:
    """Train one trial with ``params``; return its validation objective.

    The trial's artifact and checkpoints are removed afterwards (the best parameters are
    re-trained for the gate).

    Raises:
        optuna.TrialPruned: The pruner stopped the trial.
        ConfigError: The parameters make an invalid training config (the trial fails).
    """
    config = setup.trial_config(params)
    if setup.worker:
        trial.set_user_attr(WORKER_ATTR, setup.worker)
    out = setup.workdir / f"trial-{trial.number}"
    reporter = PruningReporter(trial, objective=setup.spec.objective, eval_every=config.eval_every)
    try:
        card = train(
            setup.training_set,
            config=config,
            out=out,
            checkpoint_dir=out.with_name(out.name + ".checkpoints"),
            on_progress=reporter,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(out.with_name(out.name + ".checkpoints"), ignore_errors=True)
    return objective_value(card, setup.spec.objective)


def sampled_objective(setup: TrialSetup) -> Any:
    """An Optuna objective: sample the space in the trial, then :func:`run_trial`."""

    def objective(trial: optuna.Trial) -> float:
        return run_trial(trial, setup, setup.spec.space.suggest(trial))

    return objective

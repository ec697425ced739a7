"""Running trials: one worker in this process, or several local worker processes.

A worker loads the study from the shared storage and runs trials until it has run its own
``trials``, or until the study holds ``until_total`` trials (the local coordinator's target,
shared by its workers), or its time is up. A trial that raises an error of the training is
failed and the worker goes on; a pruned trial is recorded as pruned.

:func:`run_local_workers` runs one worker in this process and the others as separate processes
(``spawn``: each has its own torch), reports every trial as it finishes by reading the storage,
and, when a worker died, waits out the heartbeat grace period and fails the trials it left
running.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict

from metarec.errors import MetaRecError
from metarec.training.config import TrainingConfig
from metarec.tuning.objective import TrialSetup, sampled_objective
from metarec.tuning.spec import TuningSpec
from metarec.tuning.study import fail_stale, open_storage, open_study

# Errors that fail one trial and let the worker go on (a diverging or invalid configuration).
TRIAL_ERRORS = (MetaRecError, RuntimeError, ValueError, FloatingPointError)
POLL_S = 1.0

TrialCallback = Callable[[FrozenTrial], None]


class WorkerPlan(BaseModel):
    """What a worker needs to join a study (picklable: it crosses to spawned processes)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    storage: str
    study: str
    spec: TuningSpec
    base: TrainingConfig
    training_set: str
    workdir: Path
    trials: int | None = None  # this worker's own trials (None: until the study's target)
    until_total: int | None = None  # stop once the study holds this many trials
    timeout_s: float | None = None
    threads: int | None = None  # torch CPU threads of this worker (None: torch's default)
    seed_offset: int = 0  # added to the sampler's seed: workers must not sample alike


def worker_name() -> str:
    """This process as ``host:pid`` (recorded on every trial it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _stop_at(until_total: int | None, on_trial: TrialCallback | None) -> Callable:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(trial)
        if until_total is not None and len(study.get_trials(deepcopy=False)) >= until_total:
            study.stop()

    return callback


def run_worker(plan: WorkerPlan, *, on_trial: TrialCallback | None = None) -> int:
    """Join the study and run trials in this process; returns how many this worker ran.

    Raises:
        TuningStorageError: The storage cannot be opened, or the study does not exist.
    """
    if plan.threads:
        torch.set_num_threads(plan.threads)
    storage = open_storage(plan.storage, heartbeat=plan.spec.heartbeat)
    study = open_study(
        storage, name=plan.study, spec=plan.spec, create=False, seed_offset=plan.seed_offset
    )
    if plan.until_total is not None and len(study.get_trials(deepcopy=False)) >= plan.until_total:
        return 0
    setup = TrialSetup(
        spec=plan.spec,
        base=plan.base,
        training_set=plan.training_set,
        workdir=plan.workdir,
        worker=worker_name(),
    )
    ran: list[FrozenTrial] = []
    plan.workdir.mkdir(parents=True, exist_ok=True)
    study.optimize(
        sampled_objective(setup),
        n_trials=plan.trials if plan.trials is not None else plan.until_total,
        timeout=plan.timeout_s,
        catch=TRIAL_ERRORS,
        callbacks=[lambda _study, trial: ran.append(trial), _stop_at(plan.until_total, on_trial)],
        gc_after_trial=True,
    )
    return len(ran)


def _worker_process(plan: WorkerPlan) -> None:
    """A spawned worker's entry point (the coordinator reports its trials: Optuna stays quiet)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_worker(plan)


def run_local_workers(
    plan: WorkerPlan, *, workers: int, on_trial: TrialCallback | None = None
) -> list[int]:
    """Run ``workers`` workers on the shared study; report every trial as it finishes.

    This process is worker 0; ``workers - 1`` more are spawned (each its own interpreter and
    torch). Each worker's sampler is seeded ``seed + its index``, so no two sample alike.

    Returns:
        Each worker's exit code, this process's first (0: it finished normally).
    """
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(  # daemon: ended with this process, never left behind
            target=_worker_process,
            args=(plan.model_copy(update={"seed_offset": n}),),
            daemon=True,
        )
        for n in range(1, workers)
    ]
    for process in processes:
        process.start()
    storage = open_storage(plan.storage, heartbeat=plan.spec.heartbeat)
    study = open_study(storage, name=plan.study, spec=plan.spec, create=False)
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    run_worker(plan, on_trial=lambda _trial: _report_new(study, seen, on_trial))
    while any(p.is_alive() for p in processes):
        time.sleep(POLL_S)
        _report_new(study, seen, on_trial)
    for process in processes:
        process.join()
    codes = [0, *(process.exitcode or 0 for process in processes)]
    if any(codes):
        time.sleep(plan.spec.heartbeat.grace_period_s + plan.spec.heartbeat.interval_s)
        fail_stale(study)
    _report_new(study, seen, on_trial)
    return codes


def _report_new(study: optuna.Study, seen: set[int], on_trial: TrialCallback | None) -> None:
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if trial.state.is_finished() and trial.number not in seen:
            seen.add(trial.number)
            if on_trial is not None:
                on_trial(trial)


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials still marked running (a crashed worker's, before they are failed)."""
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

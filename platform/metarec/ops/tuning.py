"""Tune: a study of trials on a shared storage, its reports, then the best through the gate.

The one implementation behind ``metarec tune``, ``metarec tune worker`` and ``metarec tune
trial`` (what Katib trials and KFP ``ParallelFor`` branches run). :func:`tune` creates or loads
the study, runs the trials over local worker processes, writes the reports, re-trains the best
parameters on the base configuration (without the trials' budget) and sends that candidate
through the usual gate and registration (:func:`~metarec.ops.register.register_candidate`),
with the study and trial in its model card.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from pydantic import BaseModel, ConfigDict, Field

from metarec.config import Settings
from metarec.errors import TuningError
from metarec.features.training_set import newest_training_set
from metarec.ops.register import RegistrationOutcome, register_candidate
from metarec.ops.retraining import TrainedCandidate, train_candidate, training_config
from metarec.registry.service import database_url
from metarec.tuning.objective import TrialSetup, run_trial
from metarec.tuning.provenance import TuningProvenance, stamp_card
from metarec.tuning.reports import (
    StudyReports,
    TrialRow,
    best_trial,
    counts,
    trial_rows,
    write_reports,
)
from metarec.tuning.runner import TrialCallback, WorkerPlan, run_local_workers, run_worker
from metarec.tuning.spec import TuningSpec, load_spec
from metarec.tuning.study import fail_stale, open_storage, open_study

TUNED_REASON = "tuned: study {study}, trial {trial}; registered after passing the evaluation gate"


class TuneRequest(BaseModel):
    """What to tune, where, and with how much.

    Attributes:
        space: The tuning file (default: the shipped one).
        trials: Trials to run now (added to a loaded study's).
        workers: Local worker processes sharing the storage.
        study: Study name (default: ``<registry.model_name>-tune``).
        storage: Optuna storage URL (default: the registry's database).
        training_set: Training set path or URI (default: the newest of the home).
        config: Base training configuration (YAML; default: the defaults).
        timeout_s: Each worker stops starting trials after this long.
        register_best: Re-train the best, gate it and register it (False: stop after the reports).
        model: Registered model (default: ``registry.model_name``).
        policy: Gate policy (default: the configured one).
        actor: Who tunes (kept in the ledger).
        reports: Reports folder (default: ``<home>/tuning/<study>``).
    """

    model_config = ConfigDict(frozen=True)

    space: Path | None = None
    trials: int = Field(default=20, ge=1)
    workers: int = Field(default=1, ge=1)
    study: str | None = None
    storage: str | None = None
    training_set: str | None = None
    config: Path | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    register_best: bool = True
    model: str | None = None
    policy: Path | None = None
    actor: str = "metarec-tune"
    reports: Path | None = None


class BestCandidate(BaseModel):
    """The best trial re-trained for the gate, and what the gate did with it."""

    model_config = ConfigDict(frozen=True)

    provenance: TuningProvenance
    candidate: TrainedCandidate
    registration: RegistrationOutcome


class TuneOutcome(BaseModel):
    """What :func:`tune` did."""

    model_config = ConfigDict(frozen=True)

    study: str
    objective: str
    direction: str
    counts: dict[str, int]
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    trials: list[TrialRow]
    reports: dict[str, str]
    worker_exit_codes: list[int]
    best: BestCandidate | None = None


class TrialResult(BaseModel):
    """One fixed trial's objective (``metarec tune trial``)."""

    model_config = ConfigDict(frozen=True)

    objective: str
    value: float
    params: dict[str, Any]


def study_name(settings: Settings, name: str | None) -> str:
    """The study's name: ``name``, else ``<registry.model_name>-tune``."""
    return name or f"{settings.registry.model_name}-tune"


def tuning_folder(settings: Settings, study: str) -> Path:
    """Where a study's reports and trial work go: ``<home>/tuning/<study>``."""
    return settings.paths.home / "tuning" / study


def worker_plan(
    settings: Settings,
    *,
    spec: TuningSpec,
    study: str,
    storage: str | None,
    training_set: str | None,
    config: Path | None,
    **limits: Any,
) -> WorkerPlan:
    """A worker's plan from the command's options and the settings' defaults."""
    return WorkerPlan(
        storage=storage or database_url(settings),
        study=study,
        spec=spec,
        base=training_config(config_file=config),
        training_set=str(training_set or newest_training_set(settings)),
        workdir=tuning_folder(settings, study) / "trials",
        **limits,
    )


def tune(
    settings: Settings,
    request: TuneRequest,
    *,
    on_trial: TrialCallback | None = None,
    on_progress: Callable[[Any], None] | None = None,
) -> TuneOutcome:
    """Run the study, write its reports, then gate and register the best (unless told not to).

    Args:
        settings: MetaRec settings (registry database, home, gate policy).
        request: The study and its limits.
        on_trial: Called with each trial as it finishes (a face prints a progress line).
        on_progress: Training progress of the best's re-training.

    Raises:
        TuningSpaceError: The tuning file is not valid.
        TuningStorageError: The storage cannot be opened.
    """
    spec = load_spec(request.space)
    name = study_name(settings, request.study)
    plan = worker_plan(
        settings,
        spec=spec,
        study=name,
        storage=request.storage,
        training_set=request.training_set,
        config=request.config,
        timeout_s=request.timeout_s,
    )
    study = open_study(open_storage(plan.storage, heartbeat=spec.heartbeat), name=name, spec=spec)
    fail_stale(study)  # trials a crashed earlier run left running
    target = len(study.get_trials(deepcopy=False)) + request.trials
    plan = plan.model_copy(update={"until_total": target})
    if request.workers == 1:
        run_worker(plan, on_trial=on_trial)
        codes = [0]
    else:
        threads = max(1, (os.cpu_count() or 1) // request.workers)
        plan = plan.model_copy(update={"threads": threads})
        codes = run_local_workers(plan, workers=request.workers, on_trial=on_trial)
    reports = write_reports(study, request.reports or tuning_folder(settings, name) / "reports")
    best = None
    if request.register_best and best_trial(study) is not None:
        best = gate_best(settings, study=study, plan=plan, request=request, on_progress=on_progress)
    return _outcome(study, spec, reports, codes, best)


def _outcome(
    study: optuna.Study,
    spec: TuningSpec,
    reports: StudyReports,
    codes: list[int],
    best: BestCandidate | None,
) -> TuneOutcome:
    top = best_trial(study)
    return TuneOutcome(
        study=study.study_name,
        objective=spec.objective.value,
        direction=spec.objective.direction,
        counts=counts(study),
        best_trial=None if top is None else top.number,
        best_value=None if top is None else top.value,
        best_params={} if top is None else dict(top.params),
        trials=trial_rows(study),
        reports=reports.paths(),
        worker_exit_codes=codes,
        best=best,
    )


def gate_best(
    settings: Settings,
    *,
    study: optuna.Study,
    plan: WorkerPlan,
    request: TuneRequest,
    on_progress: Callable[[Any], None] | None = None,
) -> BestCandidate:
    """Re-train the best trial's parameters on the base config; gate and register it.

    The candidate is trained into ``<home>/tuning/<study>/best-trial-<n>`` (an existing one is
    reused), its card records the study and trial, then it goes through
    :func:`~metarec.ops.register.register_candidate` like any candidate.
    """
    top = study.best_trial
    setup = TrialSetup(
        spec=plan.spec, base=plan.base, training_set=plan.training_set, workdir=plan.workdir
    )
    out = tuning_folder(settings, study.study_name) / f"best-trial-{top.number}"
    candidate = train_candidate(
        settings,
        training_set=plan.training_set,
        config=setup.final_config(top.params),
        out=out,
        on_progress=on_progress,
    )
    provenance = TuningProvenance(
        study=study.study_name,
        trial=top.number,
        objective=plan.spec.objective.value,
        value=float(top.value),
        params=dict(top.params),
    )
    card = stamp_card(out, provenance)
    registration = register_candidate(
        settings,
        artifact=out,
        model=request.model or settings.registry.model_name,
        policy=request.policy,
        training_set=plan.training_set,
        actor=request.actor,
        reason=TUNED_REASON.format(study=study.study_name, trial=top.number),
    )
    candidate = candidate.model_copy(update={"card": card})
    return BestCandidate(provenance=provenance, candidate=candidate, registration=registration)


def join_study(
    settings: Settings,
    *,
    study: str,
    space: Path | None = None,
    storage: str | None = None,
    training_set: str | None = None,
    config: Path | None = None,
    trials: int = 1,
    timeout_s: float | None = None,
    seed_offset: int | None = None,
    on_trial: TrialCallback | None = None,
) -> int:
    """Join the existing study ``study`` and run ``trials`` trials in this process.

    What each KFP ``ParallelFor`` branch or worker pod runs. Returns the trials it ran. Its
    sampler is seeded ``seed + seed_offset`` (default offset: the process id, so that workers
    joining at once do not sample alike).

    Raises:
        TuningStorageError: The storage cannot be opened, or there is no such study.
    """
    plan = worker_plan(
        settings,
        spec=load_spec(space),
        study=study,
        storage=storage,
        training_set=training_set,
        config=config,
        trials=trials,
        timeout_s=timeout_s,
        seed_offset=seed_offset if seed_offset is not None else os.getpid(),
    )
    return run_worker(plan, on_trial=on_trial)


def run_fixed_trial(
    settings: Settings,
    *,
    params: list[str],
    space: Path | None = None,
    training_set: str | None = None,
    config: Path | None = None,
) -> TrialResult:
    """Run one trial with fixed ``name=value`` parameters (what a Katib trial runs).

    Parameters of the space left out keep the base configuration's values. Nothing is stored
    in a study: Katib keeps the trial's objective from its output.

    Raises:
        UnknownTuningParameterError: A name is not a parameter of the space.
        TuningError: A value is outside its parameter's range.
    """
    spec = load_spec(space)
    fixed = spec.space.fixed(params)
    name = "katib-trial"
    setup = TrialSetup(
        spec=spec,
        base=training_config(config_file=config),
        training_set=str(training_set or newest_training_set(settings)),
        workdir=tuning_folder(settings, name) / f"trial-{os.getpid()}",
    )
    value = run_trial(optuna.trial.FixedTrial(fixed), setup, fixed)
    return TrialResult(objective=spec.objective.value, value=value, params=fixed)


def create_study(
    settings: Settings,
    *,
    study: str | None = None,
    storage: str | None = None,
    space: Path | None = None,
) -> str:
    """Create the study (or load it) on the shared storage; returns its name.

    The first step of a fan-out (the KFP tuning pipeline): the workers then join it
    (:func:`join_study`), so they never race to create it.

    Raises:
        TuningSpaceError: The tuning file is not valid.
        TuningStorageError: The storage cannot be opened, or the study has another objective.
    """
    spec = load_spec(space)
    name = study_name(settings, study)
    url = storage or database_url(settings)
    open_study(open_storage(url, heartbeat=spec.heartbeat), name=name, spec=spec)
    return name


def gate_study_best(
    settings: Settings,
    *,
    study: str,
    storage: str | None = None,
    space: Path | None = None,
    training_set: str | None = None,
    policy: Path | None = None,
) -> BestCandidate:
    """Re-train the best trial of the existing study ``study``, gate it and register it.

    The last step of a fan-out (the KFP tuning pipeline), after the workers are done.

    Raises:
        TuningStorageError: There is no such study.
        TuningError: The study has no complete trial.
    """
    spec = load_spec(space)
    plan = worker_plan(
        settings, spec=spec, study=study, storage=storage, training_set=training_set, config=None
    )
    opened = open_study(
        open_storage(plan.storage, heartbeat=spec.heartbeat), name=study, spec=spec, create=False
    )
    if best_trial(opened) is None:
        raise TuningError(
            f"Study {study!r} has no complete trial to register.",
            fix="let its workers finish at least one trial (`metarec tune worker`), then retry.",
        )
    request = TuneRequest(
        study=study, storage=storage, space=space, training_set=training_set, policy=policy
    )
    return gate_best(settings, study=opened, plan=plan, request=request)

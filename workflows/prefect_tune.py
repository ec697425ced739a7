"""The Prefect ``tune`` flow: a hyper-parameter study with local workers, then the best gated.

One task runs :func:`metarec.ops.tuning.tune` (what ``metarec tune --workers N`` runs): the study
on the shared Optuna storage (the registry's database unless told otherwise), ``workers`` worker
processes in the flow-run's pod, the reports, then the best trial re-trained, gated and
registered. No retries: trials already in the study are kept, and a rerun adds ``trials`` more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metarec.config import load_settings
from metarec.ops.tuning import TuneOutcome, TuneRequest, tune
from prefect import flow, task


def run_study(home: str | None, request: TuneRequest) -> TuneOutcome:
    """Run the study described by ``request`` with the settings of ``home``."""
    settings = load_settings(**({"home": home} if home else {}))
    return tune(settings, request)


study_task = task(run_study, name="tune-study")


@flow(name="tune", log_prints=True)
def tune_flow(
    home: str | None = None,
    trials: int = 20,
    workers: int = 2,
    study: str | None = None,
    storage: str | None = None,
    space: str | None = None,
    training_set: str | None = None,
    register_best: bool = True,
    policy: str | None = None,
) -> dict[str, Any]:
    """Tune: ``trials`` trials over ``workers`` local workers; gate and register the best.

    Args:
        home: MetaRec home (default: the configured one).
        trials: Trials to run (added to those the study already has).
        workers: Worker processes sharing the study's storage.
        study: Study name (default: ``<registry.model_name>-tune``).
        storage: Optuna storage URL (default: the registry's database).
        space: The tuning file (default: the shipped one).
        training_set: Training set path or URI (default: the newest of the home).
        register_best: Re-train the best, gate and register it (False: stop after the reports).
        policy: Evaluation gate policy YAML (default: the configured one).

    Returns:
        The study's outcome: trial counts, best trial, value and parameters, report paths, and
        the registered version when the best passed the gate.
    """
    request = TuneRequest(
        trials=trials,
        workers=workers,
        study=study,
        storage=storage,
        space=Path(space) if space else None,
        training_set=training_set,
        register_best=register_best,
        policy=Path(policy) if policy else None,
        actor="prefect-tune",
    )
    outcome = study_task(home=home, request=request)
    print(
        f"study {outcome.study}: {outcome.counts}; best trial {outcome.best_trial} "
        f"({outcome.objective} {outcome.best_value}) {outcome.best_params}"
    )
    return outcome.model_dump(mode="json", exclude={"trials"})

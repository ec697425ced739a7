"""Use cases: the operations the CLI, the API and the components share, written once.

Each takes typed inputs and returns a typed output; it is the only kind of module that calls
more than one domain package. The faces (the CLI, the control-plane API) and the pipeline
components parse, call one of these and print or serialise the result.

=========================  ============================================================
module                     use cases
=========================  ============================================================
:mod:`.ingestion`          :func:`ingest` (a dataset into a new current snapshot)
:mod:`.register`           :func:`gate_candidate`, :func:`register_candidate`,
                           :func:`register_gated`
:mod:`.transitions`        :func:`promote`, :func:`rollback`, :func:`archive`
:mod:`.flagger`            :func:`confirm_promotion`, :func:`promote_canary`,
                           :func:`roll_back_canary` (the registry follows Flagger's webhooks)
:mod:`.canary`             :func:`start_canary`, :func:`run_canary`, :func:`run_controller`,
                           :func:`release_canary`
:mod:`.local_canary`       :func:`run_local_canary`
:mod:`.deploy`             :func:`deploy_version`, :func:`await_flagger` (the serving Deployment
                           takes a version through the Kubernetes API)
:mod:`.canary_spec`        :func:`rollout_spec` (a canary's spec from typed options)
:mod:`.retraining`         :func:`retrain` and its steps
:mod:`.evaluation`         :func:`evaluate_candidate` (metrics and plot beside an artifact)
:mod:`.locations`          :func:`local_artifact`, :func:`publish_artifact` (artifacts at URIs)
:mod:`.database`           :func:`upgrade_registry` (migrations, then the roles' grants),
                           :func:`registry_database_status`
:mod:`.notifications`      :func:`send` and the notifications of each decision
:mod:`.status`             :func:`gather_status` (``metarec status``)
:mod:`.control_metrics`    :func:`control_metrics` (the rollout controller's ``/metrics``)
:mod:`.tuning`             :func:`tune`, :func:`join_study`, :func:`run_fixed_trial`,
                           :func:`create_study`, :func:`gate_study_best` (Optuna studies)
=========================  ============================================================

Names are imported on first use, so a face that needs one use case does not import the
dependencies of all of them (training, validation, serving).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_MODULES = {
    "ingestion": ("Ingested", "ingest"),
    "register": (
        "DEFAULT_REASON",
        "Registered",
        "RegistrationOutcome",
        "Rejection",
        "gate_candidate",
        "register_candidate",
        "register_gated",
    ),
    "transitions": ("Transition", "archive", "promote", "rollback"),
    "flagger": (
        "HookOutcome",
        "canary_ref",
        "confirm_promotion",
        "promote_canary",
        "roll_back_canary",
        "webhook_evidence",
    ),
    "deploy": ("Deployed", "FlaggerVerdict", "await_flagger", "deploy_version", "deployer_for"),
    "canary": (
        "CanaryOutcome",
        "release_canary",
        "run_canary",
        "run_controller",
        "start_canary",
        "write_reports",
    ),
    "local_canary": ("LocalCanaryResult", "run_local_canary"),
    "canary_spec": ("BOOTSTRAP_REASON", "parse_duration", "parse_steps", "rollout_spec"),
    "retraining": (
        "RetrainOutcome",
        "TrainedCandidate",
        "check_training_set",
        "prepare_training_set",
        "retrain",
        "train_candidate",
        "training_config",
    ),
    "evaluation": ("Evaluation", "evaluate_candidate"),
    "locations": ("artifact_sibling", "local_artifact", "publish_artifact", "read_artifact_card"),
    "database": (
        "DatabaseStatus",
        "DatabaseUpgrade",
        "registry_database_status",
        "upgrade_registry",
    ),
    "status": ("StatusReport", "gather_status"),
    "tuning": (
        "TuneOutcome",
        "TuneRequest",
        "create_study",
        "gate_study_best",
        "join_study",
        "run_fixed_trial",
        "tune",
    ),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Import a use case from its module on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)

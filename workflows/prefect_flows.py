"""Prefect 3 flows over MetaRec's components.

Tasks wrap the components unchanged (the same functions KFP wraps); retries only where a retry
can help (I/O against stores, a resumable training run), never on a validation or gate verdict:
a failed gate fails the run with its reason and nothing after it runs.
"""

from __future__ import annotations

from typing import Any

from metarec.components.build_training_set import build_training_set
from metarec.components.canary_rollout import canary_rollout
from metarec.components.evaluate_model import evaluate_model
from metarec.components.gate_model import gate_model
from metarec.components.ingest_data import ingest_data
from metarec.components.materialize_features import materialize_features
from metarec.components.register_model import register_model
from metarec.components.train_model import train_model
from metarec.components.validate_features import validate_features
from prefect import flow, task

ingest_task = task(ingest_data, name="ingest", retries=2, retry_delay_seconds=5)
materialize_task = task(
    materialize_features, name="apply-and-materialize", retries=2, retry_delay_seconds=5
)
training_set_task = task(
    build_training_set, name="build-training-set", retries=1, retry_delay_seconds=5
)
validate_task = task(validate_features, name="validate-features")
# Training resumes from its checkpoint, so one retry after a crash loses little work.
train_task = task(train_model, name="meta-train", retries=1, retry_delay_seconds=10)
evaluate_task = task(evaluate_model, name="evaluate")
gate_task = task(gate_model, name="evaluation-gate")
register_task = task(register_model, name="register", retries=2, retry_delay_seconds=5)
# No retries: a rolled-back canary is a verdict, and a retried task would resume, not redo it.
canary_task = task(canary_rollout, name="canary-and-promote")


@flow(name="materialize", log_prints=True)
def materialize_flow(
    source: str = "ml-100k",
    path: str | None = None,
    url: str | None = None,
    home: str | None = None,
) -> dict[str, Any]:
    """Ingest the source (skipped when unchanged), register features and load the online store.

    Args:
        source: ``ml-100k``, ``ml-1m`` or ``synthetic``.
        path: Local archive or folder.
        url: Archive URL (checksum verified) when no path is given.
        home: MetaRec home (default: the configured one).

    Returns:
        The snapshot id, whether it was reused, and the materialised window end.
    """
    ingested = ingest_task(source=source, path=path, url=url, home=home)
    applied = materialize_task(home=home)
    print(
        f"snapshot {ingested.snapshot_id} ({'unchanged' if ingested.reused else 'new'}); "
        f"online store as of {applied.materialized_until}"
    )
    return {
        "snapshot_id": ingested.snapshot_id,
        "reused": ingested.reused,
        "materialized_until": applied.materialized_until,
    }


def notify_failed_retrain(flow: Any, flow_run: Any, state: Any) -> None:
    """The retrain flow's ``on_failure`` hook: a ``retrain_failed`` notification.

    A run stopped by the gate is not a failure to report twice: the gate step has already sent
    its ``gate_rejected`` notification.
    """
    from metarec.components import component_settings
    from metarec.errors import GateRejectedError
    from metarec.ops import notifications

    error = state.result(raise_on_failure=False)
    if isinstance(error, GateRejectedError):
        return
    settings = component_settings(flow_run.parameters.get("home"))
    reason = state.message or f"{type(error).__name__}: {error}"
    notification = notifications.retrain_failed(
        model=settings.registry.model_name,
        reason=reason,
        details={"flow": flow.name, "flow_run": flow_run.name, "flow_run_id": str(flow_run.id)},
    )
    notifications.send(settings, notification)


@flow(name="retrain", log_prints=True, on_failure=[notify_failed_retrain])
def retrain_flow(
    home: str | None = None,
    training_config: dict[str, Any] | None = None,
    config_file: str | None = None,
    policy: str | None = None,
    canary: dict[str, Any] | None = None,
    generate_traffic: bool = True,
) -> dict[str, Any]:
    """Training set → validate → meta-train → evaluate → gate → register → canary → promote.

    Args:
        home: MetaRec home (default: the configured one).
        training_config: Hyper-parameter overrides for training.
        config_file: YAML file of hyper-parameters.
        policy: Evaluation gate policy YAML (default: the configured one).
        canary: Rollout steps and thresholds (``RolloutSpec`` fields; default: its defaults).
        generate_traffic: With the local router, replay ratings as traffic during the canary
            (on a cluster, users are the traffic and this is ignored).

    Returns:
        Lineage of the run: training set, validation result, artifact, evaluation, gate
        verdict, the registered version and how its rollout ended.
    """
    training_set = training_set_task(home=home)
    validation = validate_task(training_set=training_set.path, home=home)
    trained = train_task(
        training_set=training_set.path, home=home, config=training_config, config_file=config_file
    )
    evaluation = evaluate_task(artifact=trained.artifact, training_set=training_set.path, home=home)
    verdict = gate_task(
        artifact=trained.artifact, home=home, policy=policy, training_set=training_set.path
    )
    registered = register_task(artifact=trained.artifact, decision=verdict.decision_path, home=home)
    print(
        f"registered {registered.tag} in {registered.stage} "
        f"(new-user MAE {trained.new_user_mae}; gate: {verdict.summary})"
    )
    rollout = canary_task(
        version=registered.version,
        home=home,
        model=registered.model,
        spec=canary,
        training_set=training_set.path,
        generate_traffic=generate_traffic,
    )
    print(f"{rollout.tag}: {rollout.outcome} ({rollout.reason}); report {rollout.report_html}")
    return {
        "training_set": training_set.model_dump(),
        "validation": validation.model_dump(mode="json"),
        "artifact": trained.model_dump(),
        "evaluation": evaluation.model_dump(),
        "gate": verdict.model_dump(),
        "registered": registered.model_dump(),
        "rollout": rollout.model_dump(),
    }

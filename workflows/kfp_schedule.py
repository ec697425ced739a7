"""Recurring runs of the retrain pipeline on a Kubeflow Pipelines server (the KFP client)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from metarec.compute import ComputeSpec
from metarec.config import WorkflowSettings
from metarec.errors import MetaRecError
from metarec.workflows.kfp_compute import KfpOptions

# The chart's default externalS3.artifactRoot: where a schedule without options writes.
CHART_OBJECT_STORE_ROOT = "s3://metarec/artifacts"


def kfp_cron(expression: str) -> str:
    """KFP cron expressions have a seconds field first; accept the usual five-field form too.

    Raises:
        MetaRecError: Not a 5- or 6-field cron expression.
    """
    fields = expression.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return expression
    raise MetaRecError(
        f"Cron expression {expression!r} has {len(fields)} fields.",
        fix="use five fields (minute hour day month weekday), e.g. '0 3 * * 1'.",
    )


def schedule_pipeline(
    *,
    host: str,
    cron: str,
    compute: ComputeSpec,
    options: KfpOptions | None = None,
    experiment: str = "metarec",
    job_name: str = "metarec-retrain",
    params: dict[str, Any] | None = None,
) -> str:
    """Compile the pipeline and create a recurring run for it on a KFP server.

    Args:
        host: KFP API endpoint (e.g. http://ml-pipeline-ui.kubeflow:80).
        cron: Five- or six-field cron expression.
        compute: Compute spec of the training task.
        options: Image, object-store root, Secrets and env (default: ``workflows.image``'s
            default, the chart's default artifact root and Secrets).
        experiment: Experiment to file the runs under (created when missing).
        job_name: Display name of the recurring run.
        params: Pipeline parameters (``home``, ``object_store_root``, ``training_config``,
            ``policy``, ``canary``).

    Returns:
        The recurring run's id.
    """
    import kfp
    from metarec.workflows.kfp_pipeline import compile_pipeline

    client = kfp.Client(host=host)
    created = client.create_experiment(name=experiment)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(
            compute=compute,
            options=options
            or KfpOptions(
                image=WorkflowSettings().image, object_store_root=CHART_OBJECT_STORE_ROOT
            ),
            out=Path(tmp) / "metarec-retrain.yaml",
        )
        run = client.create_recurring_run(
            experiment_id=created.experiment_id,
            job_name=job_name,
            cron_expression=kfp_cron(cron),
            pipeline_package_path=str(package),
            params=params or {},
            max_concurrency=1,
            no_catchup=True,
            enable_caching=False,
        )
    return str(run.recurring_run_id)

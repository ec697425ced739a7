"""Prefect deployments of MetaRec's flows, with cron schedules from the settings.

The ``tune`` flow is deployed without a schedule: a study is started by hand
(``prefect deployment run tune/tune``), not every night.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from metarec.config import Settings
from metarec.errors import MetaRecError
from metarec.workflows.prefect_flows import materialize_flow, retrain_flow
from metarec.workflows.prefect_tune import tune_flow


def local_deployments(settings: Settings) -> list[Any]:
    """Deployments for ``prefect.serve``: materialize and retrain on their cron schedules, tune."""
    home = str(settings.paths.home)
    return [
        flow.to_deployment(name=name, cron=cron, parameters=parameters)
        for flow, name, cron, parameters in _flow_specs(settings, home=home)
    ]


def _flow_specs(
    settings: Settings, *, home: str | None
) -> list[tuple[Any, str, str | None, dict[str, Any]]]:
    import yaml

    workflows = settings.workflows
    training_config = (
        yaml.safe_load(workflows.training_config.read_text()) if workflows.training_config else None
    )
    return [
        (
            materialize_flow,
            "materialize",
            workflows.materialize_cron,
            {"source": workflows.source, "path": workflows.source_path, "home": home},
        ),
        (
            retrain_flow,
            "retrain",
            workflows.retrain_cron,
            {"home": home, "training_config": training_config},
        ),
        (tune_flow, "tune", None, {"home": home}),
    ]


class TemplateAction(StrEnum):
    """What ``flows deploy`` did to the work pool's base job template."""

    CREATED = "created"  # the pool was missing: created with the template
    KEPT = "kept"  # the pool exists: its template was left as it is
    REPLACED = "replaced"  # the pool exists and --replace-template replaced its template


@dataclass(frozen=True)
class PoolDeployment:
    """The outcome of :func:`deploy_to_work_pool`.

    Attributes:
        work_pool: The pool's name.
        template: What happened to its base job template.
        template_source: Where the template came from (a file, or ``built-in``); for a kept
            pool, the template it would have been created with.
        drift: Where the pool's template now disagrees with the settings' compute spec (one
            line each; empty when they agree).
        deployment_ids: The deployments' ids.
    """

    work_pool: str
    template: TemplateAction
    template_source: str
    drift: list[str]
    deployment_ids: list[str]


async def _ensure_work_pool(
    name: str, template: dict[str, Any], *, replace: bool
) -> tuple[TemplateAction, dict[str, Any]]:
    """Create the pool with ``template``; an existing one keeps its own unless ``replace``.

    Returns:
        What was done, and the pool's base job template afterwards.

    Raises:
        MetaRecError: An existing pool of that name is not a Kubernetes pool.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            pool = await client.read_work_pool(name)
        except ObjectNotFound:
            await client.create_work_pool(
                WorkPoolCreate(name=name, type="kubernetes", base_job_template=template)
            )
            return TemplateAction.CREATED, template
        if pool.type != "kubernetes":
            raise MetaRecError(
                f"Work pool {name!r} is a {pool.type!r} pool, not a Kubernetes one.",
                fix="name a Kubernetes work pool (or a new name: it is created).",
            )
        if not replace:
            return TemplateAction.KEPT, pool.base_job_template
        await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
        return TemplateAction.REPLACED, template


def deploy_to_work_pool(
    settings: Settings,
    *,
    work_pool: str,
    base_job_template: Path | None = None,
    replace_template: bool = False,
) -> PoolDeployment:
    """Deploy the flows to a Kubernetes work pool on their schedules, creating it if missing.

    The pool's base job template has one owner. An existing pool's template is left as it is
    (on a cluster the Helm chart's ConfigMap ``<release>-metarec-prefect-job-template`` is that
    template: MetaRec's env with Secrets by reference, pod hardening, volumes, service
    account), unless ``replace_template``. A missing pool is created with ``base_job_template``
    when given, else with the built-in template rendered from ``training_compute``
    (:func:`~metarec.workflows.kubernetes_job_template.training_base_job_template`), whose
    compute parts are the chart's. Flows run from ``workflows.image`` by module path.

    Args:
        settings: Active settings (schedules, image, compute spec).
        work_pool: Name of the Prefect work pool.
        base_job_template: The template to create the pool with (or to replace its template
            with): a ``base-job-template.json`` or the chart's ConfigMap manifest.
        replace_template: Replace an existing pool's template.

    Returns:
        What was done to the pool, where it disagrees with ``training_compute``, the ids.

    Raises:
        MetaRecError: The pool exists and is not a Kubernetes pool, or the template file is
            missing or not a template.
    """
    import asyncio

    from metarec.workflows.kubernetes_job_template import (
        compute_drift,
        load_base_job_template,
        training_base_job_template,
    )

    rendered = training_base_job_template(settings.training_compute, image=settings.workflows.image)
    template = load_base_job_template(base_job_template) if base_job_template else rendered
    action, current = asyncio.run(_ensure_work_pool(work_pool, template, replace=replace_template))
    return PoolDeployment(
        work_pool=work_pool,
        template=action,
        template_source=str(base_job_template) if base_job_template else "built-in",
        drift=compute_drift(current, rendered),
        deployment_ids=_deploy_flows(settings, work_pool=work_pool),
    )


def _deploy_flows(settings: Settings, *, work_pool: str) -> list[str]:
    """Deploy the flows to ``work_pool`` from the platform image; their ids."""
    from prefect.deployments.runner import EntrypointType

    ids = []
    for flow, name, cron, parameters in _flow_specs(settings, home=None):
        deployment_id = flow.deploy(
            name=name,
            work_pool_name=work_pool,
            image=settings.workflows.image,
            build=False,
            push=False,
            cron=cron,
            parameters=parameters,
            entrypoint_type=EntrypointType.MODULE_PATH,
            print_next_steps=False,
        )
        ids.append(str(deployment_id))
    return ids

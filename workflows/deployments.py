"""Prefect deployments of MetaRec's flows, with cron schedules from the settings."""

from __future__ import annotations

from typing import Any

from metarec.config import Settings
from metarec.workflows.prefect_flows import materialize_flow, retrain_flow


def local_deployments(settings: Settings) -> list[Any]:
    """Deployments for ``prefect.serve``: materialize and retrain on their cron schedules."""
    home = str(settings.paths.home)
    return [
        flow.to_deployment(name=name, cron=cron, parameters=parameters)
        for flow, name, cron, parameters in _flow_specs(settings, home=home)
    ]


def _flow_specs(
    settings: Settings, *, home: str | None
) -> list[tuple[Any, str, str, dict[str, Any]]]:
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
    ]


async def _ensure_work_pool(name: str, template: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_work_pool(name)
        except ObjectNotFound:
            await client.create_work_pool(
                WorkPoolCreate(name=name, type="kubernetes", base_job_template=template)
            )
        else:
            await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))


def deploy_to_work_pool(settings: Settings, *, work_pool: str) -> list[str]:
    """Create or update a Kubernetes work pool and deploy both flows to it on their schedules.

    The pool's base job template carries the training compute spec (GPU limits, tolerations,
    node selector); flows run from the platform image by module path, and the MetaRec home
    comes from the pod's environment.

    Args:
        settings: Active settings (schedules, image, compute spec).
        work_pool: Name of the Prefect work pool (created when missing).

    Returns:
        The deployment ids.
    """
    import asyncio

    from metarec.workflows.kubernetes_job_template import training_base_job_template
    from prefect.deployments.runner import EntrypointType

    template = training_base_job_template(settings.training_compute, image=settings.workflows.image)
    asyncio.run(_ensure_work_pool(work_pool, template))
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

"""`metarec flows deploy` against a real Prefect API: pool template, schedules, GPU limits."""

import asyncio

import pytest
from metarec.config import load_settings
from metarec.workflows.deployments import TemplateAction, deploy_to_work_pool
from prefect.client.orchestration import get_client
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

pytestmark = pytest.mark.integration


async def _read(pool_name: str):
    async with get_client() as client:
        pool = await client.read_work_pool(pool_name)
        deployments = await client.read_deployments()
        return pool, [d for d in deployments if d.work_pool_name == pool_name]


def test_deploy_creates_the_pool_and_scheduled_deployments_whose_jobs_get_the_gpu(
    prefect_server, tmp_path
):
    settings = load_settings(
        home=tmp_path,
        training_compute={"gpu_count": 1, "node_selector": {"pool": "gpu"}},
        workflows={"retrain_cron": "0 5 * * 1", "image": "registry.example/metarec:1.2.3"},
    )
    first = deploy_to_work_pool(settings, work_pool="metarec-gpu")
    again = deploy_to_work_pool(settings, work_pool="metarec-gpu")  # idempotent
    assert (first.template, again.template) == (TemplateAction.CREATED, TemplateAction.KEPT)
    assert first.drift == again.drift == []
    ids = first.deployment_ids
    pool, deployments = asyncio.run(_read("metarec-gpu"))
    assert (
        len(ids) == 3
        and sorted(again.deployment_ids) == sorted(ids)
        and {d.name for d in deployments} == {"materialize", "retrain", "tune"}
    )
    tune = next(d for d in deployments if d.name == "tune")
    assert not tune.schedules  # a study is started by hand (`prefect deployment run tune/tune`)
    retrain = next(d for d in deployments if d.name == "retrain")
    assert retrain.schedules[0].schedule.cron == "0 5 * * 1"
    assert retrain.entrypoint == "metarec.workflows.prefect_flows.retrain_flow"
    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(
            pool.base_job_template, retrain.job_variables or {}
        )
    )
    container = configuration.job_manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"] == "registry.example/metarec:1.2.3"
    assert configuration.job_manifest["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}

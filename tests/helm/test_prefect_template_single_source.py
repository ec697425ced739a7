"""One Prefect work-pool template: the chart's ConfigMap, with the compute parts MetaRec renders.

The chart's template (``<release>-metarec-prefect-job-template``) and the built-in one of
``metarec flows deploy`` (``workflows/kubernetes_job_template.py``) are filled by
prefect-kubernetes' own job-configuration code for several compute specs; the Jobs they give must
agree on the compute parts (GPU limit, CPU/memory, tolerations, node selector, image). Then
`flows deploy` against a real Prefect API leaves a pool created from the chart's ConfigMap as it
is, so the flow-run Jobs keep the chart's Secrets env and hardening.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import yaml
from metarec.compute import ComputeSpec
from metarec.config import load_settings
from metarec.workflows.deployments import TemplateAction, deploy_to_work_pool
from metarec.workflows.kubernetes_job_template import (
    compute_drift,
    load_base_job_template,
    training_base_job_template,
)

GPU_OVERRIDES = {
    "gpu-production": {},
    "two-amd-gpus": {
        "gpuCount": 2,
        "gpuResource": "amd.com/gpu",
        "gpuType": "",
        "tolerations": [{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoExecute"}],
        "nodeSelector": {"accelerator": "mi300x"},
    },
    "cpu-only": {
        "gpuCount": 0,
        "gpuType": "",
        "tolerations": [],
        "nodeSelector": {},
        "cpuLimit": "6",
    },
}


def _compute(values: dict) -> ComputeSpec:
    c = values["training"]["compute"]
    return ComputeSpec(
        cpu_request=c["cpuRequest"],
        cpu_limit=c["cpuLimit"],
        memory_request=c["memoryRequest"],
        memory_limit=c["memoryLimit"],
        gpu_count=c["gpuCount"],
        gpu_resource=c["gpuResource"],
        gpu_type=c["gpuType"] or None,
        gpu_type_label=c.get("gpuTypeLabel", "nvidia.com/gpu.product"),
        tolerations=c["tolerations"],
        node_selector=c["nodeSelector"],
    )


def _rendered(chart, tmp_path, case: str):
    """(the chart's ConfigMap, the compute spec, the image) for a compute case."""
    values = yaml.safe_load(chart.gpu_values.read_text())
    values["training"]["compute"].update(GPU_OVERRIDES[case])
    if not values["training"]["compute"]["gpuCount"]:
        values["training"]["device"] = "cpu"
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(values))
    configmap = chart.render(path).get("ConfigMap", chart.name("prefect-job-template"))
    image = f"{values['image']['repository']}@{values['image']['digest']}"
    return configmap, _compute(values), image


def _job(template: dict, job_variables: dict) -> dict:
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(
            template, job_variables, client=object()
        )
    )
    return configuration.job_manifest


def _compute_parts(job: dict) -> dict:
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return {
        "resources": container["resources"],
        "image": container["image"],
        "tolerations": pod.get("tolerations") or [],
        "nodeSelector": pod.get("nodeSelector") or {},
    }


@pytest.mark.parametrize("case", sorted(GPU_OVERRIDES))
def test_chart_and_built_in_templates_give_jobs_with_the_same_compute(chart, tmp_path, case):
    configmap, compute, image = _rendered(chart, tmp_path, case)
    ours = yaml.safe_load(configmap["data"]["base-job-template.json"])
    built_in = training_base_job_template(compute, image=image)
    assert compute_drift(ours, built_in) == []
    overrides = {"cpu_limit": "12", **({"gpu_limit": 3} if compute.gpu_count else {})}
    for job_variables in ({}, overrides):
        chart_job = _compute_parts(_job(ours, job_variables))
        assert chart_job == _compute_parts(_job(built_in, job_variables)), job_variables
        limits = chart_job["resources"]["limits"]
        gpus = job_variables.get("gpu_limit", compute.gpu_count) or None
        assert (limits.get(compute.gpu_resource), limits["cpu"]) == (
            gpus,
            job_variables.get("cpu_limit", compute.cpu_limit),
        )
    assert chart_job["image"] == image


def test_flows_deploy_reads_the_chart_configmap_as_rendered(chart, tmp_path):
    configmap, _, _ = _rendered(chart, tmp_path, "gpu-production")
    manifest = tmp_path / "configmap.yaml"
    manifest.write_text(yaml.safe_dump(configmap))
    key = tmp_path / "base-job-template.json"
    key.write_text(configmap["data"]["base-job-template.json"])
    assert load_base_job_template(manifest) == load_base_job_template(key)


def test_flows_deploy_keeps_a_pool_made_from_the_chart_configmap(chart, tmp_path, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    configmap, compute, _ = _rendered(chart, tmp_path, "gpu-production")
    template = yaml.safe_load(configmap["data"]["base-job-template.json"])
    pool = f"chart-{uuid.uuid4().hex[:8]}"

    async def create_then_read(create: bool) -> dict:
        async with get_client() as client:
            if create:
                await client.create_work_pool(
                    WorkPoolCreate(name=pool, type="kubernetes", base_job_template=template)
                )
            return (await client.read_work_pool(pool)).base_job_template

    asyncio.run(create_then_read(True))
    settings = load_settings(
        home=tmp_path / "home",
        training_compute=compute.model_dump(),
        workflows={"image": "registry.example.com/ml/metarec:0.1.0"},
    )
    outcome = deploy_to_work_pool(settings, work_pool=pool)
    assert (outcome.template, outcome.drift) == (TemplateAction.KEPT, [])
    assert asyncio.run(create_then_read(False)) == template
    container = _job(template, {})["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["METAREC_REGISTRY__DATABASE_URL"]["valueFrom"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

"""`metarec flows deploy` and the work pool's base job template: one owner, one compute spec.

Against the real, ephemeral Prefect API (``prefect_server``). A platform team's pool (here a
template carrying what the chart adds: env from a Secret, a security context, a service account)
must survive a `flows deploy`; the built-in template is only used for a pool that is missing.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid

import pytest
import yaml
from metarec.cli.main import run
from metarec.compute import ComputeSpec
from metarec.config import load_settings
from metarec.errors import DataFormatError, DataSourceNotFoundError, MetaRecError
from metarec.workflows.deployments import TemplateAction, deploy_to_work_pool
from metarec.workflows.kubernetes_job_template import (
    compute_drift,
    load_base_job_template,
    training_base_job_template,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

IMAGE = "registry.example/metarec:1.2.3"
COMPUTE = {"gpu_count": 1, "node_selector": {"pool": "gpu"}}
SECRET_ENV = {
    "name": "METAREC_REGISTRY__DATABASE_URL",
    "valueFrom": {"secretKeyRef": {"name": "metarec-db", "key": "url"}},
}


@pytest.fixture(autouse=True)
def _prefect(prefect_server):
    """A real Prefect API for the pools and deployments."""


@pytest.fixture
def settings(tmp_path):
    return load_settings(home=tmp_path, training_compute=COMPUTE, workflows={"image": IMAGE})


def _pool_name() -> str:
    return f"pool-{uuid.uuid4().hex[:8]}"


def _platform_template(compute: ComputeSpec) -> dict:
    """What a platform team's pool holds: the compute parts plus the chart's extra parts."""
    template = training_base_job_template(compute, image="registry.example/metarec@sha256:ab")
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    pod["securityContext"] = {"runAsNonRoot": True, "runAsUser": 10001}
    pod["serviceAccountName"] = "metarec"
    container = pod["containers"][0]
    container["env"] = [SECRET_ENV]
    container["securityContext"] = {"readOnlyRootFilesystem": True}
    return template


async def _create_pool(name: str, template: dict, pool_type: str = "kubernetes") -> None:
    async with get_client() as client:
        await client.create_work_pool(
            WorkPoolCreate(name=name, type=pool_type, base_job_template=template)
        )


async def _pool_template(name: str) -> dict:
    async with get_client() as client:
        return (await client.read_work_pool(name)).base_job_template


async def _retrain_job(name: str) -> dict:
    async with get_client() as client:
        pool = await client.read_work_pool(name)
        deployments = await client.read_deployments()
    (retrain,) = [d for d in deployments if d.work_pool_name == name and d.name == "retrain"]
    configuration = await KubernetesWorkerJobConfiguration.from_template_and_values(
        pool.base_job_template, retrain.job_variables or {}
    )
    return configuration.job_manifest


def test_an_existing_pools_template_is_kept_and_its_jobs_keep_the_platform_parts(settings):
    name = _pool_name()
    platform = _platform_template(settings.training_compute)
    asyncio.run(_create_pool(name, platform))
    outcome = deploy_to_work_pool(settings, work_pool=name)
    assert outcome.template is TemplateAction.KEPT
    assert outcome.drift == [] and len(outcome.deployment_ids) == 3
    assert asyncio.run(_pool_template(name)) == platform
    pod = asyncio.run(_retrain_job(name))["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert SECRET_ENV in container["env"]
    assert container["securityContext"] == {"readOnlyRootFilesystem": True}
    assert pod["serviceAccountName"] == "metarec"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"] == IMAGE, "the deployment's image wins over the pool default"


def test_replace_template_replaces_it_with_the_given_configmap(settings, tmp_path):
    name = _pool_name()
    asyncio.run(_create_pool(name, training_base_job_template(ComputeSpec(), image="old:1")))
    platform = _platform_template(settings.training_compute)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "mr-metarec-prefect-job-template"},
        "data": {"base-job-template.json": json.dumps(platform, indent=2)},
    }
    path = tmp_path / "cm.yaml"
    path.write_text(yaml.safe_dump(configmap))
    outcome = deploy_to_work_pool(
        settings, work_pool=name, base_job_template=path, replace_template=True
    )
    assert (outcome.template, outcome.template_source) == (TemplateAction.REPLACED, str(path))
    assert asyncio.run(_pool_template(name)) == platform and outcome.drift == []


def test_a_missing_pool_is_created_from_the_file_or_the_built_in_template(settings, tmp_path):
    platform = _platform_template(settings.training_compute)
    path = tmp_path / "base-job-template.json"
    path.write_text(json.dumps(platform))
    from_file, built_in = _pool_name(), _pool_name()
    outcome = deploy_to_work_pool(settings, work_pool=from_file, base_job_template=path)
    assert outcome.template is TemplateAction.CREATED
    assert asyncio.run(_pool_template(from_file)) == platform
    deploy_to_work_pool(settings, work_pool=built_in)
    assert asyncio.run(_pool_template(built_in)) == training_base_job_template(
        settings.training_compute, image=IMAGE
    )


def test_flows_deploy_warns_where_a_kept_pool_disagrees_with_the_compute_spec(
    tmp_path, monkeypatch, capsys
):
    name = _pool_name()
    asyncio.run(_create_pool(name, _platform_template(ComputeSpec(gpu_count=1))))
    monkeypatch.setenv("METAREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("METAREC_TRAINING_COMPUTE__GPU_COUNT", "2")
    assert run(["flows", "deploy", "--work-pool", name]) == 0
    out, err = capsys.readouterr()
    assert f"Work pool {name}: exists, its base job template is kept." in out
    assert "gpu_limit default: pool 1, settings 2" in " ".join(err.split())
    assert asyncio.run(_pool_template(name)) == _platform_template(ComputeSpec(gpu_count=1))


def test_a_pool_of_another_type_is_refused(settings):
    name = _pool_name()
    asyncio.run(_create_pool(name, {}, pool_type="process"))
    with pytest.raises(MetaRecError, match="not a Kubernetes one"):
        deploy_to_work_pool(settings, work_pool=name)


def test_a_template_file_must_be_a_template(tmp_path):
    with pytest.raises(DataSourceNotFoundError):
        load_base_job_template(tmp_path / "absent.json")
    bad = tmp_path / "cm.yaml"
    bad.write_text(yaml.safe_dump({"kind": "ConfigMap", "data": {"other.json": "{}"}}))
    with pytest.raises(DataFormatError, match="not a Prefect base job template"):
        load_base_job_template(bad)


def test_compute_drift_names_each_disagreeing_part():
    reference = training_base_job_template(ComputeSpec(gpu_count=1), image="a:1")
    assert compute_drift(copy.deepcopy(reference), reference) == []
    cpu_only = training_base_job_template(ComputeSpec(cpu_limit="3"), image="b:2")
    drift = compute_drift(cpu_only, reference)
    assert [line.split(":")[0] for line in drift] == [
        "cpu_limit default",
        "gpu_limit default",
        "tolerations default",
        "job manifest resources",
    ]
    assert drift[1] == "gpu_limit default: pool None, settings 1"

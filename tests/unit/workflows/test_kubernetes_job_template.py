"""The Prefect job template, checked through prefect-kubernetes' own job-configuration code."""

import asyncio

import pytest
from metarec.compute import ComputeSpec, Toleration
from metarec.workflows.kubernetes_job_template import training_base_job_template
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

GPU = ComputeSpec(
    cpu_request="4",
    cpu_limit="8",
    memory_request="16Gi",
    memory_limit="32Gi",
    gpu_count=1,
    gpu_type="NVIDIA-H100-80GB-HBM3",
    tolerations=[Toleration(key="dedicated", operator="Equal", value="training")],
    node_selector={"pool": "gpu"},
)


@pytest.fixture(autouse=True)
def _prefect(prefect_server):
    """Template resolution asks a Prefect API for blocks and variables: use the real one."""


def _configuration(template, values):
    return asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, values))


def _container_and_pod(configuration):
    pod = configuration.job_manifest["spec"]["template"]["spec"]
    return pod["containers"][0], pod


def test_gpu_limit_tolerations_and_node_selector_reach_the_job_container():
    configuration = _configuration(training_base_job_template(GPU, image="metarec:1"), {})
    container, pod = _container_and_pod(configuration)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["memory"] == "32Gi"
    assert container["resources"]["requests"]["cpu"] == "4"
    assert container["image"] == "metarec:1"
    assert {
        "key": "dedicated",
        "operator": "Equal",
        "value": "training",
        "effect": "NoSchedule",
    } in pod["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_deployments_can_override_the_gpu_count():
    configuration = _configuration(
        training_base_job_template(GPU, image="metarec:1"), {"gpu_limit": 4}
    )
    container, _ = _container_and_pod(configuration)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4


def test_cpu_training_has_no_gpu_limit_or_gpu_toleration():
    configuration = _configuration(training_base_job_template(ComputeSpec(), image="metarec:1"), {})
    container, pod = _container_and_pod(configuration)
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert not pod.get("tolerations")

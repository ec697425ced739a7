"""GPU training: the compute spec reaches the training Job template, the retraining CronJob and
the Prefect work-pool base job template, exactly as metarec.compute.ComputeSpec renders it."""

from __future__ import annotations

import asyncio
import json
import uuid

import kubernetes_validate
import pytest
import yaml
from metarec.compute import ComputeSpec

GPU = "nvidia.com/gpu"


def _compute_from_values(path) -> ComputeSpec:
    c = yaml.safe_load(path.read_text())["training"]["compute"]
    return ComputeSpec(
        cpu_request=c["cpuRequest"],
        cpu_limit=c["cpuLimit"],
        memory_request=c["memoryRequest"],
        memory_limit=c["memoryLimit"],
        gpu_count=c["gpuCount"],
        gpu_resource=c["gpuResource"],
        gpu_type=c["gpuType"] or None,
        tolerations=c["tolerations"],
        node_selector=c["nodeSelector"],
    )


def _pod(m, chart, name):
    return m.get("CronJob", chart.name(name))["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_training_job_template_carries_gpu_limits_tolerations_and_node_selector(
    gpu_single_node, chart
):
    cronjob = gpu_single_node.get("CronJob", chart.name("train"))
    assert cronjob["spec"]["suspend"] is True, "a template: it must never fire on its own"
    pod = _pod(gpu_single_node, chart, "train")
    (container,) = pod["containers"]
    assert container["resources"]["limits"][GPU] == "1"
    assert GPU not in container["resources"]["requests"], "extended resources go in limits"
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    dedicated = {"key": "dedicated", "operator": "Equal", "value": "ml-training"}
    assert {**dedicated, "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {
        "node.kubernetes.io/pool": "gpu",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }
    assert container["args"] == [
        "train",
        "--device",
        "cuda",
        "--training-set",
        "s3://acme-ml-metarec/training_sets/latest",
    ]
    assert pod["restartPolicy"] == "Never"


@pytest.mark.parametrize("values", ["default", "gpu"])
def test_helm_renders_the_compute_spec_like_metarec_compute(
    chart, default, gpu_single_node, values
):
    if values == "default":
        m, path = default, chart.path / "values.yaml"
    else:  # one node: the plain training Job (more: a TrainJob, test_tuning_and_distributed.py)
        m, path = gpu_single_node, chart.gpu_values
    spec = _compute_from_values(path)
    for name in ("train", "retrain"):
        pod = _pod(m, chart, name)
        assert pod["containers"][0]["resources"] == spec.resources()
        tolerations = [t.to_kubernetes() for t in spec.effective_tolerations()]
        assert pod.get("tolerations", []) == tolerations
        assert pod.get("nodeSelector", {}) == spec.effective_node_selector()


def test_default_training_is_cpu_only(default, chart):
    pod = _pod(default, chart, "train")
    assert GPU not in pod["containers"][0]["resources"]["limits"]
    assert "tolerations" not in pod
    assert pod["containers"][0]["args"][:3] == ["train", "--device", "cpu"]


def test_training_device_follows_the_gpu_count(chart):
    pod = _pod(chart.render(sets=["training.compute.gpuCount=1"]), chart, "train")
    assert pod["containers"][0]["args"][:3] == ["train", "--device", "cuda"]
    with pytest.raises(chart.RenderError, match=r"training\.device is cuda but"):
        chart.render(sets=["training.device=cuda"])


def test_a_gpu_toleration_given_by_the_user_is_not_duplicated(chart):
    m = chart.render(
        sets=[
            "training.compute.gpuCount=2",
            "training.compute.tolerations[0].key=nvidia.com/gpu",
            "training.compute.tolerations[0].operator=Exists",
            "training.compute.tolerations[0].effect=NoExecute",
        ]
    )
    # Two GPUs make training a distributed job; the retrain pod carries the same compute spec.
    pod = _pod(m, chart, "retrain")
    assert pod["tolerations"] == [{"key": GPU, "operator": "Exists", "effect": "NoExecute"}]
    assert pod["containers"][0]["resources"]["limits"][GPU] == "2"


def test_scheduled_retraining_runs_the_retrain_flow(gpu, chart):
    cronjob = gpu.get("CronJob", chart.name("retrain"))
    assert cronjob["spec"]["schedule"] == "30 2 * * *"
    assert cronjob["spec"]["timeZone"] == "Europe/Berlin"
    assert cronjob["spec"].get("suspend") is False
    (container,) = _pod(gpu, chart, "retrain")["containers"]
    assert container["command"] == ["metarec"]
    assert container["args"] == ["flows", "run", "retrain"]
    assert container["resources"]["limits"][GPU] == "1"


def _work_pool_template(m, chart):
    cm = m.get("ConfigMap", chart.name("prefect-job-template"))
    return json.loads(cm["data"]["base-job-template.json"])


def test_prefect_work_pool_template_keeps_prefect_kubernetes_shape(gpu, chart):
    from prefect_kubernetes.worker import KubernetesWorker

    ours = _work_pool_template(gpu, chart)
    theirs = KubernetesWorker.get_default_base_job_template()
    assert set(ours) == {"job_configuration", "variables"}
    assert set(ours["job_configuration"]) == set(theirs["job_configuration"])
    assert set(theirs["variables"]["properties"]) <= set(ours["variables"]["properties"])


def test_prefect_work_pool_template_matches_the_python_template(gpu, chart):
    from metarec.workflows.kubernetes_job_template import training_base_job_template

    ours = _work_pool_template(gpu, chart)
    spec = _compute_from_values(chart.gpu_values)
    values = yaml.safe_load(chart.gpu_values.read_text())["image"]
    image = f"{values['repository']}@{values['digest']}"
    reference = training_base_job_template(spec, image=image)
    ours_vars = ours["variables"]["properties"]
    ref_vars = reference["variables"]["properties"]
    for name in (
        "cpu_request",
        "cpu_limit",
        "memory_request",
        "memory_limit",
        "tolerations",
        "node_selector",
        "gpu_limit",
        "image",
    ):
        assert ours_vars[name]["default"] == ref_vars[name]["default"], name
    pod = ours["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    ref_pod = reference["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["tolerations"] == ref_pod["tolerations"] == "{{ tolerations }}"
    assert pod["nodeSelector"] == ref_pod["nodeSelector"] == "{{ node_selector }}"
    assert pod["containers"][0]["resources"] == ref_pod["containers"][0]["resources"]
    assert pod["containers"][0]["resources"]["limits"][GPU] == "{{ gpu_limit }}"


@pytest.mark.parametrize("version", ["1.30", "1.33"])
def test_prefect_worker_turns_the_template_into_a_valid_gpu_job(gpu, chart, version):
    """The real prefect-kubernetes worker code fills the template for a flow run; the Job it
    would create validates strictly and carries the GPU, tolerations and hardening."""
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = _work_pool_template(gpu, chart)
    config = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(template, {}, client=object())
    )
    config.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="retrain-run"))
    job = config.job_manifest
    kubernetes_validate.validate(job, version, strict=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert str(container["resources"]["limits"][GPU]) == "1"
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["METAREC_REGISTRY__DATABASE_URL"]["valueFrom"]
    assert container["args"][:3] == ["prefect", "flow-run", "execute"]


def test_prefect_work_pool_template_is_optional(chart):
    m = chart.render(sets=["prefect.workPool.enabled=false"])
    assert chart.name("prefect-job-template") not in m.names("ConfigMap")

"""The KFP pipeline's distributed job renders as the chart's does, for the same compute spec.

helm/values-gpu-production.yaml trains on 2 nodes × 1 H100 as a TrainJob. The pipeline's step
(metarec.ops.distributed_training.render_run, from the request the compiled pipeline carries:
metarec.workflows.kfp_compute.distributed_request) must render the same job from the same
compute spec: same torchrun entry point (plus `--out <artifact URI>`: pipeline pods share no
disk), nodes, processes and resources per node, image, runtime, scheduling, hardening and env.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from metarec.compute import ComputeSpec
from metarec.ops.distributed_training import DistributedTrainingRequest, render_run
from metarec.training.trainjob import DistributedJobOptions
from metarec.workflows.kfp_compute import KfpOptions, chart_secrets, distributed_request

OUT = "s3://acme-ml-metarec/pipelines/run-1/artifact"
# A Prefect home and Prefect's telemetry switch: the chart's pods run Prefect, KFP's do not.
CHART_ONLY_ENV = {"PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED"}


def _values(chart) -> dict[str, Any]:
    return yaml.safe_load(Path(chart.gpu_values).read_text())


def _compute(values: dict[str, Any]) -> ComputeSpec:
    c = values["training"]["compute"]
    return ComputeSpec(
        cpu_request=c["cpuRequest"], cpu_limit=c["cpuLimit"],
        memory_request=c["memoryRequest"], memory_limit=c["memoryLimit"],
        nodes=c["nodes"], gpu_count=c["gpuCount"], gpu_resource=c["gpuResource"],
        gpu_type=c["gpuType"], tolerations=c["tolerations"], node_selector=c["nodeSelector"],
    )  # fmt: skip


def _kfp_job(chart, image: str, *, engine: str = "trainer", **compute: int) -> dict[str, Any]:
    """The job the pipeline's step renders, configured as an operator would for this release."""
    values = _values(chart)
    s3 = values["externalS3"]
    options = KfpOptions(
        image=image,
        object_store_root="s3://acme-ml-metarec",
        secrets=chart_secrets(
            database=values["externalDatabase"]["existingSecret"],
            redis=values["externalRedis"]["existingSecret"],
        ),
        env={
            "METAREC_FEAST__ENVIRONMENT": "cluster",
            "METAREC_FEAST__PROJECT": "metarec",
            "METAREC_FEAST__REPO_PATH": "/app/feature_repo",
            "METAREC_FEAST__OFFLINE_ROOT": s3["offlineRoot"],
            "METAREC_REGISTRY__ARTIFACT_ROOT": s3["artifactRoot"],
            "AWS_DEFAULT_REGION": s3["region"],
        },
        distributed=DistributedJobOptions(
            engine=engine, service_account=chart.name(), patch_manager="metarec.io/helm"
        ),
    )
    spec = _compute(values).model_copy(update=compute)
    request = DistributedTrainingRequest.model_validate(
        json.loads(distributed_request(spec, options))
    )
    ts = values["training"]["trainingSet"]
    return render_run(request, training_set=ts, out=OUT, namespace=chart.namespace)


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return node["template"]["spec"]["template"]["spec"]


def test_the_pipeline_trainjob_is_the_charts_for_the_same_compute_spec(gpu, chart):
    (helm,) = gpu.of_kind("TrainJob")
    ours = _kfp_job(chart, helm["spec"]["trainer"]["image"])
    mine, theirs = ours["spec"], helm["spec"]
    assert mine["runtimeRef"] == theirs["runtimeRef"]
    for field in ("image", "numNodes", "numProcPerNode", "resourcesPerNode"):
        assert mine["trainer"][field] == theirs["trainer"][field], field
    assert mine["trainer"]["command"] == [*theirs["trainer"]["command"], "--out", OUT]
    pod, chart_pod = _pod(ours), _pod(helm)
    for field in ("serviceAccountName", "securityContext", "nodeSelector", "tolerations"):
        assert pod[field] == chart_pod[field], field
    (container,), (chart_container,) = pod["containers"], chart_pod["containers"]
    assert container["name"] == chart_container["name"]
    assert container["securityContext"] == chart_container["securityContext"]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert mounts == [m["mountPath"] for m in chart_container["volumeMounts"]]


def test_the_pipeline_trainjob_has_the_charts_env(gpu, chart):
    (helm,) = gpu.of_kind("TrainJob")
    env = {e["name"]: e for e in _kfp_job(chart, "x")["spec"]["trainer"]["env"]}
    chart_env = {e["name"]: e for e in helm["spec"]["trainer"]["env"]}
    assert set(chart_env) - set(env) == CHART_ONLY_ENV
    assert set(env) <= set(chart_env)
    for name in set(env) - {"METAREC_FEAST__PROJECT", "METAREC_FEAST__REPO_PATH"}:
        assert env[name] == chart_env[name], name  # same value, or the same Secret key
    assert env["METAREC_REGISTRY__MIGRATE_ON_OPEN"]["value"] == "false"
    assert not [name for name in env if "TOKEN" in name]


def test_the_pipeline_pytorchjob_is_the_charts(chart):
    sets = ["training.distributed.operator=training-operator", "training.compute.nodes=3",
            "training.compute.gpuCount=2"]  # fmt: skip
    (helm,) = chart.render(chart.gpu_values, sets=sets).of_kind("PyTorchJob")
    image = helm["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    ours = _kfp_job(chart, image["image"], engine="training-operator", nodes=3, gpu_count=2)
    assert ours["spec"]["nprocPerNode"] == helm["spec"]["nprocPerNode"] == "2"
    for role in ("Master", "Worker"):
        mine = ours["spec"]["pytorchReplicaSpecs"][role]
        theirs = helm["spec"]["pytorchReplicaSpecs"][role]
        assert (mine["replicas"], mine["restartPolicy"]) == (
            theirs["replicas"],
            theirs["restartPolicy"],
        )
        pod, chart_pod = mine["template"]["spec"], theirs["template"]["spec"]
        for field in ("serviceAccountName", "nodeSelector", "tolerations", "restartPolicy"):
            assert pod[field] == chart_pod[field], field
        (container,), (chart_container,) = pod["containers"], chart_pod["containers"]
        for field in ("name", "image", "resources", "securityContext"):
            assert container[field] == chart_container[field], field
        assert container["command"] == [*chart_container["command"], "--out", OUT]

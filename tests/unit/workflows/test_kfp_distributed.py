"""The compiled retrain pipeline trains on several nodes through a TrainJob launcher task.

Above one training process (nodes × GPUs per node, the chart's rule), the in-pod training task
gives way to ``train-distributed-op``: a small pod with no GPU that carries the job request (a
JSON constant) and hands its artifact URI to evaluate, gate and register.
"""

import json

import pytest
import yaml
from metarec.compute import ComputeSpec, Toleration
from metarec.errors import ConfigError
from metarec.ops.distributed_training import DistributedTrainingRequest, render_run
from metarec.training.trainjob import DistributedJobOptions
from metarec.workflows.kfp_compute import KfpOptions, apply_compute, chart_secrets
from metarec.workflows.kfp_pipeline import compile_pipeline

OPTIONS = KfpOptions(
    image="registry.example/acme/metarec:2.3.4",
    object_store_root="s3://acme-ml/metarec",
    secrets=chart_secrets(database="acme-db", redis="acme-redis", object_store="acme-s3"),
    env={"AWS_ENDPOINT_URL": "http://minio.storage:9000"},
    distributed=DistributedJobOptions(engine="training-operator", runtime_name="torch"),
)
TWO_NODES = ComputeSpec(
    nodes=2,
    gpu_count=4,
    gpu_type="NVIDIA-H100-80GB-HBM3",
    tolerations=[Toleration(key="dedicated", operator="Equal", value="gpu", effect=None)],
)
LAUNCHER = "train-distributed-op"


def _compile(tmp_path, compute):
    path = compile_pipeline(compute=compute, options=OPTIONS, out=tmp_path / "p.yaml")
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _producer(task: dict, name: str) -> str:
    return task["inputs"]["parameters"][name]["taskOutputParameter"]["producerTask"]


def test_two_nodes_train_through_the_launcher_not_in_a_pod(tmp_path):
    spec, k8s = _compile(tmp_path, TWO_NODES)
    tasks = spec["root"]["dag"]["tasks"]
    assert LAUNCHER in tasks and "train-op" not in tasks
    for step in ("evaluate-op", "gate-op", "register-op"):
        assert _producer(tasks[step], "artifact") == LAUNCHER, step
    assert _producer(tasks[LAUNCHER], "validation_result_id") == "validate-op"
    executors = spec["deploymentSpec"]["executors"]
    assert not [
        n for n, e in executors.items() if "accelerator" in e["container"].get("resources", {})
    ]
    launcher = executors[f"exec-{LAUNCHER}"]["container"]
    assert launcher["image"] == OPTIONS.image
    assert launcher["resources"]["resourceCpuRequest"] == "100m"
    assert "tolerations" not in k8s[f"exec-{LAUNCHER}"], "the launcher runs anywhere"
    assert k8s[f"exec-{LAUNCHER}"]["secretAsEnv"], "it reads the artifact card on the store"
    assert tasks[LAUNCHER]["retryPolicy"]["maxRetryCount"] == 1


def test_the_launcher_carries_the_job_of_the_compute_spec(tmp_path):
    spec, _ = _compile(tmp_path, TWO_NODES)
    constant = spec["root"]["dag"]["tasks"][LAUNCHER]["inputs"]["parameters"]["request"]
    request = DistributedTrainingRequest.model_validate(
        json.loads(constant["runtimeValue"]["constant"])
    )
    assert request.compute == TWO_NODES, "tolerations of every effect (null) survive"
    assert request.options == OPTIONS.distributed and request.image == OPTIONS.image
    job = render_run(request, training_set="s3://t", out="s3://o", namespace="ml")
    assert job["kind"] == "PyTorchJob"
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master", "Worker"}
    container = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["torchrun", "--nnodes=2", "--nproc-per-node=4"]
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "acme-s3"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.storage:9000"


@pytest.mark.parametrize(
    ("compute", "distributed"),
    [
        (ComputeSpec(gpu_count=1), False),
        (ComputeSpec(), False),
        (ComputeSpec(nodes=1, gpu_count=2), True),  # the chart's rule: 2 processes
        (ComputeSpec(nodes=3), True),
    ],
)
def test_one_process_keeps_the_in_pod_training_task(tmp_path, compute, distributed):
    spec, _ = _compile(tmp_path, compute)
    tasks = set(spec["root"]["dag"]["tasks"])
    assert (LAUNCHER in tasks, "train-op" in tasks) == (distributed, not distributed)
    if not distributed and compute.gpu_count:
        resources = spec["deploymentSpec"]["executors"]["exec-train-op"]["container"]["resources"]
        assert resources["accelerator"]["resourceCount"] == "1"


def test_apply_compute_refuses_several_nodes_on_one_task_and_points_at_the_launcher():
    from kfp import dsl

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def noop() -> None:
        return None

    def pipeline() -> None:
        apply_compute(noop(), TWO_NODES)

    with pytest.raises(ConfigError, match="2 nodes, but a KFP task is one pod") as info:
        dsl.pipeline(name="p")(pipeline)  # builds the graph: the task gets the compute spec
    assert "train_distributed_op" in info.value.fix

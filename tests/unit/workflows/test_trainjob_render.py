"""The TrainJob and PyTorchJob of one pipeline run, against the upstream APIs.

The TrainJob deserialises into the typed model of `kubeflow-trainer-api` (unknown fields are
dropped silently by the model, so a field lost in the round trip fails too); the PyTorchJob
validates against the training-operator schema of tests/helm/schemas and its pod templates
against the Kubernetes API, as the chart's do (tests/helm/test_tuning_and_distributed.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
from metarec.compute import ComputeSpec, Toleration
from metarec.errors import ConfigError
from metarec.training.trainjob import (
    DistributedJobOptions,
    job_name,
    job_outcome,
    render_distributed_job,
    train_args,
)

REPO = Path(__file__).resolve().parents[3]
PYTORCHJOB_SCHEMA = REPO / "tests/helm/schemas/training-operator/pytorchjob.schema.json"
GPU = "nvidia.com/gpu"
COMPUTE = ComputeSpec(
    nodes=3,
    gpu_count=2,
    cpu_request="8",
    memory_request="32Gi",
    gpu_type="NVIDIA-H100-80GB-HBM3",
    tolerations=[Toleration(key="dedicated", operator="Equal", value="ml-training")],
    node_selector={"node.kubernetes.io/pool": "gpu"},
)
ENV = [
    {"name": "METAREC_REGISTRY__DATABASE_URL",
     "valueFrom": {"secretKeyRef": {"name": "db", "key": "registry-url"}}},
    {"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"},
    {"name": "METAREC_REGISTRY__MIGRATE_ON_OPEN", "value": "true"},  # never in a job's pod
]  # fmt: skip
OUT = "s3://acme/pipelines/run-1/artifact"


def _lost_fields(rendered: Any, round_trip: Any, path: str = "") -> list[str]:
    if isinstance(rendered, dict):
        lost = []
        for key, value in rendered.items():
            if not isinstance(round_trip, dict) or key not in round_trip:
                lost.append(f"{path}.{key}")
            else:
                lost += _lost_fields(value, round_trip[key], f"{path}.{key}")
        return lost
    if isinstance(rendered, list):
        pairs = zip(rendered, round_trip, strict=False)
        return [x for i, (a, b) in enumerate(pairs) for x in _lost_fields(a, b, f"{path}[{i}]")]
    return []


def _render(engine: str = "trainer", compute: ComputeSpec = COMPUTE) -> dict[str, Any]:
    args = train_args(compute, training_set="s3://acme/ts.parquet", out=OUT)
    return render_distributed_job(
        name=job_name("metarec-train", key=OUT),
        namespace="ml",
        image="registry.example/metarec@sha256:abc",
        compute=compute,
        args=args,
        env=ENV,
        options=DistributedJobOptions(engine=engine, service_account="metarec-training"),
    )


def test_the_trainjob_is_a_trainjob_of_the_upstream_api():
    job = _render()
    model = TrainerV1alpha1TrainJob.from_dict(copy.deepcopy(job))
    assert not _lost_fields(job, model.to_dict())
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 2)
    assert trainer["resourcesPerNode"] == COMPUTE.resources()
    assert GPU not in trainer["resourcesPerNode"]["requests"]
    assert trainer["command"] == [
        "torchrun", "--nnodes=3", "--nproc-per-node=2", "-m", "metarec",
        "train", "--device", "cuda", "--training-set", "s3://acme/ts.parquet", "--out", OUT,
    ]  # fmt: skip
    assert job["spec"]["suspend"] is False, "a pipeline's job runs at once"
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == COMPUTE.effective_node_selector()
    assert pod["tolerations"] == [t.to_kubernetes() for t in COMPUTE.effective_tolerations()]
    assert pod["serviceAccountName"] == "metarec-training"
    (container,) = pod["containers"]
    assert container["name"] == node["name"] == "node"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_typed_model_catches_what_a_wrong_renderer_would_write():
    job = _render()
    job["spec"]["trainer"]["numProcsPerNode"] = 2  # misspelt: the model drops it
    model = TrainerV1alpha1TrainJob.from_dict(copy.deepcopy(job))
    assert _lost_fields(job, model.to_dict()) == [".spec.trainer.numProcsPerNode"]


def test_the_env_opens_the_registry_without_migrating_and_holds_no_api_token():
    env = _render()["spec"]["trainer"]["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["METAREC_REGISTRY__MIGRATE_ON_OPEN"]["value"] == "false"
    assert by_name["METAREC_HOME"]["value"] == "/var/lib/metarec"
    assert by_name["METAREC_REGISTRY__DATABASE_URL"] == ENV[0]
    assert not [name for name in by_name if "TOKEN" in name]
    assert len(by_name) == len(env), "no name twice"


def test_the_pytorchjob_validates_like_the_charts():
    job = _render("training-operator")
    jsonschema.validate(job, json.loads(PYTORCHJOB_SCHEMA.read_text()))
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert (specs["Master"]["replicas"], specs["Worker"]["replicas"]) == (1, 2)
    assert job["spec"]["nprocPerNode"] == "2"
    for role in ("Master", "Worker"):
        template = specs[role]["template"]
        (container,) = template["spec"]["containers"]
        assert container["name"] == "pytorch"
        assert container["command"] == _render()["spec"]["trainer"]["command"]
        assert container["resources"]["limits"][GPU] == "2"
        name = f"pytorch-{role.lower()}"
        pod_template = {"apiVersion": "v1", "kind": "PodTemplate",
                        "metadata": {"name": name}, "template": template}  # fmt: skip
        kubernetes_validate.validate(pod_template, "1.33", strict=True)


def test_a_single_node_pytorchjob_has_no_worker():
    job = _render("training-operator", COMPUTE.model_copy(update={"nodes": 1}))
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    jsonschema.validate(job, json.loads(PYTORCHJOB_SCHEMA.read_text()))


def test_names_are_dns_labels_unique_per_artifact_and_stable():
    a, b = job_name("metarec-train", key=OUT), job_name("metarec-train", key=OUT + "2")
    assert a != b and a == job_name("metarec-train", key=OUT)
    assert job_name("X" * 80, key=OUT).startswith("x") and len(job_name("X" * 80, key=OUT)) <= 63
    with pytest.raises(ConfigError, match="not a valid job name"):
        render_distributed_job(
            name="Bad_Name", namespace="ml", image="i", compute=COMPUTE, args=[], env=[],
            options=DistributedJobOptions(),
        )  # fmt: skip


def test_cuda_without_gpus_is_refused_and_cpu_is_the_default_then():
    cpu = ComputeSpec(nodes=2)
    assert train_args(cpu, training_set="t", out="o")[:3] == ["train", "--device", "cpu"]
    with pytest.raises(ConfigError, match="no GPUs"):
        train_args(cpu, training_set="t", out="o", device="cuda")


@pytest.mark.parametrize(
    ("kind", "conditions", "state"),
    [
        ("TrainJob", [{"type": "Created", "status": "True"}], "running"),
        ("TrainJob", [{"type": "Complete", "status": "True", "reason": "JobsCompleted"}],
         "succeeded"),
        ("TrainJob", [{"type": "Complete", "status": "False"}], "running"),
        ("TrainJob", [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
         "failed"),
        ("TrainJob", [{"type": "Succeeded", "status": "True"}], "running"),
        ("PyTorchJob", [{"type": "Running", "status": "True"}], "running"),
        ("PyTorchJob", [{"type": "Succeeded", "status": "True"}], "succeeded"),
        ("PyTorchJob", [{"type": "Failed", "status": "True", "reason": "OOMKilled"}], "failed"),
    ],
)  # fmt: skip
def test_job_outcome_reads_each_controllers_terminal_condition(kind, conditions, state):
    outcome = job_outcome({"kind": kind, "status": {"conditions": conditions}})
    assert outcome.state == state
    if state == "failed":
        assert outcome.reason == conditions[0]["reason"]

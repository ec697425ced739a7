"""One distributed training run as a Kubernetes custom resource: a TrainJob or a PyTorchJob.

:func:`render_distributed_job` renders what the Helm chart's ``trainjob.yaml`` renders, for one
run of a pipeline instead of a release: a Kubeflow Trainer v2 ``TrainJob``
(``trainer.kubeflow.org/v1alpha1``) or, on clusters with the older training operator, a
``PyTorchJob`` (``kubeflow.org/v1``), switched by :attr:`DistributedJobOptions.engine`. Every
node runs the same entry point, ``torchrun --nnodes=N --nproc-per-node=G -m metarec train …``
(:meth:`~metarec.compute.ComputeSpec.torchrun_command`), with the compute spec's resources per
node, tolerations and node selector. Pods on a cluster share no disk: the artifact goes to an
object-store URI (``train --out``), written by rank 0.

:func:`job_outcome` reads a job's terminal condition: ``Complete``/``Failed`` for a TrainJob,
``Succeeded``/``Failed`` for a PyTorchJob.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from metarec.compute import ComputeSpec
from metarec.errors import ConfigError

TRAINER_GROUP = "trainer.kubeflow.org"
TRAINER_VERSION = "v1alpha1"
OPERATOR_GROUP = "kubeflow.org"
OPERATOR_VERSION = "v1"
COMPONENT_LABEL = "app.kubernetes.io/component"
# The chart's pod hardening (helm/metarec/values.yaml podSecurityContext and securityContext).
POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
NO_MIGRATION = {"name": "METAREC_REGISTRY__MIGRATE_ON_OPEN", "value": "false"}
# A DNS-1035 label: what both controllers accept as a job name.
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


class DistributedJobOptions(BaseModel):
    """Which controller runs a distributed run, and the job settings the chart's values give."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: Literal["trainer", "training-operator"] = Field(
        default="trainer",
        description="trainer: a Kubeflow Trainer v2 TrainJob; training-operator: a PyTorchJob "
        "(the chart's training.distributed.operator).",
    )
    runtime_name: str = Field(default="torch-distributed", min_length=1)
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    runtime_node: str = Field(
        default="node", description="Replicated job and container of the runtime patched."
    )
    patch_manager: str = "metarec.io/kfp"
    active_deadline_seconds: int = Field(default=86400, ge=1)
    backoff_limit: int = Field(default=1, ge=0, description="PyTorchJob only.")
    ttl_seconds_after_finished: int = Field(default=604800, ge=0, description="PyTorchJob only.")
    clean_pod_policy: Literal["None", "Running", "All"] = "None"
    service_account: str = Field(default="", description="Pods' ServiceAccount (empty: default).")
    home_path: str = Field(default="/var/lib/metarec", description="The writable MetaRec home.")
    home_size_limit: str = "2Gi"
    tmp_size_limit: str = "1Gi"


class JobOutcome(NamedTuple):
    """A job's state: ``running``, ``succeeded`` or ``failed``, with the condition's words."""

    state: Literal["running", "succeeded", "failed"]
    reason: str = ""
    message: str = ""


def is_distributed(compute: ComputeSpec) -> bool:
    """Whether training runs as a distributed job: the chart's rule (nodes × GPUs per node > 1)."""
    return compute.distributed


def job_name(prefix: str, *, key: str) -> str:
    """A DNS-1035 job name unique to ``key`` (the run's artifact URI): ``<prefix>-<hash>``.

    The same run gets the same name, so a retried step finds its job instead of starting another.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    head = re.sub(r"[^a-z0-9-]", "-", prefix.lower()).strip("-")[: 62 - len(digest)] or "metarec"
    name = f"{head.rstrip('-')}-{digest}"
    if not _NAME.match(name) or not name[0].isalpha():
        name = f"mr-{digest}"
    return name


def train_args(
    compute: ComputeSpec,
    *,
    training_set: str,
    out: str,
    device: str = "",
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``metarec train`` arguments of every node (the chart's ``metarec.training.args``).

    Args:
        compute: The compute spec (device ``cuda`` with GPUs, else ``cpu``, unless ``device``).
        training_set: Training set URI.
        out: Artifact URI (rank 0 writes it).
        device: ``cuda``, ``cpu`` or ``auto`` (empty: from the GPU count).
        extra: Further ``metarec train`` arguments.

    Raises:
        ConfigError: ``cuda`` with no GPUs.
    """
    device = device or ("cuda" if compute.gpu_count else "cpu")
    if device == "cuda" and not compute.gpu_count:
        raise ConfigError(
            "The training device is cuda but the compute spec has no GPUs.",
            fix="request GPUs (gpu_count) or train on the cpu device.",
        )
    return ["train", "--device", device, "--training-set", training_set, "--out", out, *extra]


def base_env(options: DistributedJobOptions) -> list[dict[str, Any]]:
    """The plain env of the chart's ``metarec.env`` that is not a store: home, telemetry off.

    The registry is opened without migrating (the chart's db-migrate hook migrates); no API
    token: training never calls the API.
    """
    home = options.home_path
    plain = {
        "METAREC_HOME": home,
        "HOME": home,
        "BENTOML_HOME": f"{home}/bentoml",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "DO_NOT_TRACK": "1",
        "BENTOML_DO_NOT_TRACK": "true",
    }
    return [*({"name": name, "value": value} for name, value in plain.items()), NO_MIGRATION]


def job_env(
    options: DistributedJobOptions, env: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """:func:`base_env`, then ``env`` (a name given again replaces its value in place).

    ``METAREC_REGISTRY__MIGRATE_ON_OPEN`` stays ``false`` whatever ``env`` says: the chart's
    db-migrate hook Job is the only one that migrates.
    """
    merged: dict[str, dict[str, Any]] = {}
    for item in [*base_env(options), *env]:
        merged[item["name"]] = dict(item)
    merged[NO_MIGRATION["name"]] = dict(NO_MIGRATION)
    return list(merged.values())


def _pod_parts(
    compute: ComputeSpec, options: DistributedJobOptions
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec fields but containers, the container's mounts and security context)."""
    pod: dict[str, Any] = {"securityContext": dict(POD_SECURITY_CONTEXT)}
    if options.service_account:
        pod["serviceAccountName"] = options.service_account
    if selector := compute.effective_node_selector():
        pod["nodeSelector"] = selector
    if tolerations := compute.effective_tolerations():
        pod["tolerations"] = [t.to_kubernetes() for t in tolerations]
    pod["volumes"] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": options.tmp_size_limit}},
        {"name": "metarec-home", "emptyDir": {"sizeLimit": options.home_size_limit}},
    ]
    container = {
        "securityContext": dict(CONTAINER_SECURITY_CONTEXT),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "metarec-home", "mountPath": options.home_path},
        ],
    }
    return pod, container


def render_trainjob(
    *,
    name: str,
    namespace: str,
    image: str,
    compute: ComputeSpec,
    command: list[str],
    env: list[dict[str, Any]],
    options: DistributedJobOptions,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """A Kubeflow Trainer v2 TrainJob, structured as the chart's (``trainjob.yaml``)."""
    pod, container = _pod_parts(compute, options)
    node = options.runtime_node
    replicated = {
        "name": node,
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": {
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {**pod, "containers": [{"name": node, **container}]},
                }
            },
        },
    }
    return {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "suspend": False,
            "activeDeadlineSeconds": options.active_deadline_seconds,
            "runtimeRef": {
                "apiGroup": TRAINER_GROUP,
                "kind": options.runtime_kind,
                "name": options.runtime_name,
            },
            "trainer": {
                "image": image,
                "command": list(command),
                "numNodes": compute.nodes,
                "numProcPerNode": compute.processes_per_node,
                "resourcesPerNode": compute.resources(),
                "env": list(env),
            },
            "runtimePatches": [
                {
                    "manager": options.patch_manager,
                    "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated]}}},
                }
            ],
        },
    }


def render_pytorchjob(
    *,
    name: str,
    namespace: str,
    image: str,
    compute: ComputeSpec,
    command: list[str],
    env: list[dict[str, Any]],
    options: DistributedJobOptions,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """A training-operator v1 PyTorchJob: one Master and ``nodes - 1`` Workers, as the chart's."""
    pod, mounts = _pod_parts(compute, options)
    container = {
        "name": "pytorch",
        "image": image,
        "command": list(command),
        "env": list(env),
        "resources": compute.resources(),
        **mounts,
    }
    template = {
        "metadata": {"labels": dict(labels)},
        "spec": {
            **pod,
            "automountServiceAccountToken": False,
            "restartPolicy": "OnFailure",
            "containers": [container],
        },
    }
    replicas = {"Master": 1, "Worker": compute.nodes - 1}
    return {
        "apiVersion": f"{OPERATOR_GROUP}/{OPERATOR_VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "nprocPerNode": str(compute.processes_per_node),
            "runPolicy": {
                "suspend": False,
                "activeDeadlineSeconds": options.active_deadline_seconds,
                "backoffLimit": options.backoff_limit,
                "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
                "cleanPodPolicy": options.clean_pod_policy,
            },
            "pytorchReplicaSpecs": {
                role: {"replicas": n, "restartPolicy": "OnFailure", "template": template}
                for role, n in replicas.items()
                if n > 0
            },
        },
    }


def render_distributed_job(
    *,
    name: str,
    namespace: str,
    image: str,
    compute: ComputeSpec,
    args: Sequence[str],
    env: Sequence[Mapping[str, Any]],
    options: DistributedJobOptions,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Render one distributed training run: a TrainJob, or a PyTorchJob (``options.engine``).

    Args:
        name: Job name (a DNS-1035 label, :func:`job_name`).
        namespace: Namespace of the job.
        image: Platform image of every node.
        compute: Nodes, GPUs per node, CPU/memory, tolerations and node selector.
        args: The ``metarec`` arguments (:func:`train_args`), run under ``torchrun`` on each node.
        env: Env of the store credentials and settings (Kubernetes ``EnvVar`` objects), merged
            over :func:`base_env` (:func:`job_env`).
        options: Engine, runtime and job settings.
        labels: Labels of the job and its pods (default: component ``training``).

    Returns:
        The custom resource as a dict.

    Raises:
        ConfigError: ``name`` is not a DNS-1035 label.
    """
    if not _NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a valid job name.",
            fix="use a DNS-1035 label: lowercase letters, digits and '-', at most 63 characters.",
        )
    parts = {
        "name": name,
        "namespace": namespace,
        "image": image,
        "compute": compute,
        "command": compute.torchrun_command(list(args)),
        "env": job_env(options, env),
        "options": options,
        "labels": dict(labels or {COMPONENT_LABEL: "training"}),
    }
    if options.engine == "trainer":
        return render_trainjob(**parts)
    return render_pytorchjob(**parts)


def job_outcome(job: Mapping[str, Any]) -> JobOutcome:
    """The state of a TrainJob or PyTorchJob from its ``status.conditions``.

    A TrainJob ends with condition ``Complete`` or ``Failed``; a PyTorchJob with ``Succeeded`` or
    ``Failed`` (status ``"True"``). Anything else is still running.
    """
    done = "Complete" if job.get("kind") == "TrainJob" else "Succeeded"
    conditions = (job.get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("status") != "True":
            continue
        words = (str(condition.get("reason") or ""), str(condition.get("message") or ""))
        if condition.get("type") == "Failed":
            return JobOutcome("failed", *words)
        if condition.get("type") == done:
            return JobOutcome("succeeded", *words)
    return JobOutcome("running")

"""Train on several nodes from a pipeline step: create a TrainJob (or PyTorchJob), wait, check.

A KFP task is one pod; training on ``nodes`` × ``GPUs per node`` runs instead as a custom
resource of Kubeflow Trainer v2 (or the training operator v1) that this step creates through the
Kubernetes API (:func:`train_on_cluster`). The job writes its artifact to the run's object-store
URI (rank 0 uploads it, the model card last); the step waits for the job's terminal condition,
then reads the card at that URI, so "succeeded" always means "the artifact is there".

The job's name comes from the artifact URI (which holds the pipeline run id): a retried step
finds the job it created and waits on it again rather than starting a second one. The step
deletes nothing: a failed or timed-out job stays for inspection (and is cleaned up by the
controller's TTL or by hand).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from metarec import kube_client
from metarec.compute import ComputeSpec
from metarec.errors import ConfigError, DistributedTrainingError
from metarec.ops.locations import read_artifact_card
from metarec.training.trainjob import (
    OPERATOR_GROUP,
    OPERATOR_VERSION,
    TRAINER_GROUP,
    TRAINER_VERSION,
    DistributedJobOptions,
    JobOutcome,
    job_name,
    job_outcome,
    render_distributed_job,
    train_args,
)

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# TrainingConfig overrides that `metarec train` takes as flags; the step passes no others.
CLI_OVERRIDES = {"algorithm": "--algorithm", "max_steps": "--max-steps", "seed": "--seed"}
RBAC_FIX = (
    "allow the pipeline's ServiceAccount to create and get {plural}.{group} in the namespace "
    "(docs/workflows.md, 'Multi-node training')"
)


class DistributedTrainingRequest(BaseModel):
    """What the pipeline hands the step (JSON-able): image, compute spec, job settings, env."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = Field(min_length=1)
    compute: ComputeSpec
    options: DistributedJobOptions = Field(default_factory=DistributedJobOptions)
    env: list[dict[str, Any]] = Field(
        default_factory=list, description="Kubernetes EnvVar objects: store settings, Secrets."
    )
    namespace: str = Field(default="", description="Empty: the pod's own namespace.")
    name_prefix: str = "metarec-train"
    timeout_s: float = Field(default=0, ge=0, description="0: activeDeadlineSeconds + 10 min.")
    poll_s: float = Field(default=30, gt=0)

    @property
    def wait_s(self) -> float:
        """How long the step waits for the job's terminal condition."""
        return self.timeout_s or self.options.active_deadline_seconds + 600


class ClusterRun(NamedTuple):
    """A finished distributed run: the artifact URI, its card, and the job that wrote it."""

    artifact: str
    card: Any
    kind: str
    name: str
    namespace: str
    created: bool


def _resource(job: Mapping[str, Any]) -> tuple[str, str, str]:
    """(group, version, plural) of a rendered job."""
    if job["kind"] == "TrainJob":
        return TRAINER_GROUP, TRAINER_VERSION, "trainjobs"
    return OPERATOR_GROUP, OPERATOR_VERSION, "pytorchjobs"


class ClusterJobs:
    """Creates and reads TrainJobs and PyTorchJobs through ``CustomObjectsApi``."""

    def __init__(self, api_client: Any) -> None:
        """Use ``api_client`` (a ``kubernetes.client.ApiClient``)."""
        from kubernetes import client

        self._api = client.CustomObjectsApi(api_client)

    def create_or_get(self, job: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``job``; when one of its name exists (a retried step), return that one.

        Returns:
            (the stored job, whether this call created it).
        """
        from kubernetes.client.exceptions import ApiException

        group, version, plural = _resource(job)
        namespace = job["metadata"]["namespace"]
        try:
            body = self._api.create_namespaced_custom_object(
                group, version, namespace, plural, dict(job)
            )
            return body, True
        except ApiException as exc:
            if exc.status != 409:
                raise _api_error(exc, "create", job) from exc
        return self.get(job), False

    def get(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """The stored job of ``job``'s kind, namespace and name."""
        from kubernetes.client.exceptions import ApiException

        group, version, plural = _resource(job)
        meta = job["metadata"]
        try:
            return self._api.get_namespaced_custom_object(
                group, version, meta["namespace"], plural, meta["name"]
            )
        except ApiException as exc:
            raise _api_error(exc, "read", job) from exc


def _api_error(exc: Any, action: str, job: Mapping[str, Any]) -> DistributedTrainingError:
    group, _, plural = _resource(job)
    where = f"{job['kind']} {job['metadata']['namespace']}/{job['metadata']['name']}"
    status = getattr(exc, "status", None)
    if status in (401, 403):
        fix = RBAC_FIX.format(plural=plural, group=group) + "."
    elif status == 404 and action == "create":
        fix = f"install the controller that serves {plural}.{group} (or switch the engine)."
    else:
        fix = "check the Kubernetes API server and the job; rerun the step."
    return DistributedTrainingError(
        f"Cannot {action} {where} (HTTP {status}: {getattr(exc, 'reason', exc)}).", fix=fix
    )


def kubernetes_api_client() -> Any:
    """An ``ApiClient`` as the pod's ServiceAccount (in a cluster), else from ``KUBECONFIG``.

    Raises:
        DistributedTrainingError: Neither is available.
    """
    return kube_client.kubernetes_api_client(
        error=DistributedTrainingError,
        fix="run the step in the cluster (a KFP task) or set KUBECONFIG.",
    )


def pod_namespace(given: str = "", *, namespace_file: Path = NAMESPACE_FILE) -> str:
    """``given``, else the namespace of this pod's ServiceAccount.

    Raises:
        ConfigError: None given and not in a pod.
    """
    if given:
        return given
    try:
        return namespace_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"No namespace for the training job: {namespace_file} is not readable ({exc}).",
            fix="run the step in a pod, or set the namespace of the distributed training request.",
        ) from exc


def override_args(config: Mapping[str, Any] | None) -> tuple[str, list[str]]:
    """(device, further ``metarec train`` flags) for hyper-parameter overrides.

    Raises:
        ConfigError: An override ``metarec train`` takes no flag for.
    """
    values = {k: v for k, v in (config or {}).items() if v is not None}
    device = str(values.pop("device", ""))
    unknown = sorted(set(values) - set(CLI_OVERRIDES))
    if unknown:
        raise ConfigError(
            f"Distributed training takes no override of {', '.join(unknown)}.",
            fix="override only device, "
            + ", ".join(CLI_OVERRIDES)
            + " on a multi-node run (the torchrun command's `metarec train` flags), or train "
            "on one node.",
        )
    flags = [
        arg
        for key, flag in CLI_OVERRIDES.items()
        if key in values
        for arg in (flag, str(values[key]))
    ]
    return device, flags


def render_run(
    request: DistributedTrainingRequest,
    *,
    training_set: str,
    out: str,
    config: Mapping[str, Any] | None = None,
    namespace: str,
) -> dict[str, Any]:
    """The custom resource of one run: its name from ``out``, ``train --out out``."""
    device, flags = override_args(config)
    args = train_args(
        request.compute, training_set=training_set, out=out, device=device, extra=flags
    )
    return render_distributed_job(
        name=job_name(request.name_prefix, key=out),
        namespace=namespace,
        image=request.image,
        compute=request.compute,
        args=args,
        env=request.env,
        options=request.options,
    )


def wait_for_job(
    jobs: ClusterJobs,
    job: Mapping[str, Any],
    *,
    timeout_s: float,
    poll_s: float,
    on_progress: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> JobOutcome:
    """Poll ``job`` until its terminal condition; log each change of its conditions.

    Raises:
        DistributedTrainingError: The job failed (with its reason), or did not finish in time.
    """
    where = f"{job['kind']} {job['metadata']['namespace']}/{job['metadata']['name']}"
    start, seen = monotonic(), None
    while True:
        stored = jobs.get(job)
        outcome = job_outcome(stored)
        conditions = [
            f"{c.get('type')}={c.get('status')}"
            for c in (stored.get("status") or {}).get("conditions") or []
        ]
        elapsed = monotonic() - start
        if conditions != seen:
            on_progress(
                f"{where}: {', '.join(conditions) or 'no conditions yet'} ({elapsed:.0f} s)"
            )
            seen = conditions
        if outcome.state == "failed":
            raise DistributedTrainingError(
                f"{where} failed: {outcome.reason or 'no reason'}: {outcome.message}".rstrip(": "),
                fix=f"read its pods' logs (kubectl -n {job['metadata']['namespace']} describe "
                f"{job['kind'].lower()} {job['metadata']['name']}); the job is kept; a new "
                "pipeline run starts a new one.",
            )
        if outcome.state == "succeeded":
            return outcome
        if elapsed >= timeout_s:
            raise DistributedTrainingError(
                f"{where} did not finish within {timeout_s:.0f} s (still running; not deleted).",
                fix="inspect or delete the job with kubectl, or raise the step's timeout "
                "(DistributedTrainingRequest.timeout_s).",
            )
        sleep(min(poll_s, max(timeout_s - elapsed, 0.0)))


def train_on_cluster(
    request: DistributedTrainingRequest,
    *,
    training_set: str,
    out: str,
    config: Mapping[str, Any] | None = None,
    api_client: Any,
    on_progress: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> ClusterRun:
    """Run one distributed training as a TrainJob or PyTorchJob and return its artifact.

    Args:
        request: Image, compute spec, engine and env of the job.
        training_set: Validated training set URI.
        out: Artifact URI (the run's folder on the object store).
        config: Hyper-parameter overrides (device, algorithm, max_steps, seed).
        api_client: A ``kubernetes.client.ApiClient`` (:func:`kubernetes_api_client`).
        on_progress: Called with each progress line.
        sleep: Waits between polls.

    Returns:
        The artifact URI and its model card, and the job.

    Raises:
        DistributedTrainingError: The job could not be created or read, failed, timed out, or
            succeeded without a model card at ``out``.
        ConfigError: An override the command line does not take, or no namespace.
    """
    namespace = pod_namespace(request.namespace)
    job = render_run(
        request, training_set=training_set, out=out, config=config, namespace=namespace
    )
    jobs = ClusterJobs(api_client)
    _, created = jobs.create_or_get(job)
    name = job["metadata"]["name"]
    verb = "Created" if created else "Found (a retried step)"
    on_progress(
        f"{verb} {job['kind']} {namespace}/{name}: {request.compute.world_size} process(es)"
    )
    wait_for_job(
        jobs, job, timeout_s=request.wait_s, poll_s=request.poll_s, on_progress=on_progress,
        sleep=sleep,
    )  # fmt: skip
    card = read_artifact_card(out)
    if card is None:
        raise DistributedTrainingError(
            f"{job['kind']} {namespace}/{name} succeeded but left no model card at {out}.",
            fix="check that its image's `metarec train --out` writes to object-store URIs and "
            "that the pods have the store's credentials (env of the request).",
        )
    return ClusterRun(out, card, job["kind"], name, namespace, created)

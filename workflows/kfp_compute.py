"""The Kubernetes side of KFP v2 tasks: compute spec, image, Secrets as env, caching.

:func:`apply_compute` renders MetaRec's training compute spec onto the training task;
:func:`apply_cluster_options` gives every task what it needs on a real KFP backend: caching off,
the chart's Secrets as environment (``kfp.kubernetes.use_secret_as_env``) and plain env.
:class:`KfpOptions` holds those compile-time choices; its Secret defaults are the Helm chart's
(``helm/metarec/values.yaml``), so a pipeline compiled with no flags reads the same Secrets as
the chart's workloads. The registry API token is not among them: no pipeline step calls the
API (every step opens the registry and the stores directly), so no task holds it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from metarec.compute import ComputeSpec
from metarec.errors import ConfigError
from metarec.training.trainjob import DistributedJobOptions
from pydantic import BaseModel, ConfigDict, Field, field_validator

# A Kubernetes object name (RFC 1123 subdomain) and an environment variable name.
_SECRET_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class SecretEnv(BaseModel):
    """One existing Kubernetes Secret whose keys become environment variables of every task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_SECRET_NAME, description="Name of the Secret.")
    env: dict[str, str] = Field(
        min_length=1, description="Secret data key → environment variable name."
    )


def chart_secrets(
    *,
    database: str = "metarec-database",
    redis: str = "metarec-redis",
    object_store: str = "",
) -> tuple[SecretEnv, ...]:
    """The Secrets of the chart that the pipeline's tasks read, with keys and environment names.

    Args:
        database: ``externalDatabase.existingSecret`` (registry and Feast registry URLs).
        redis: ``externalRedis.existingSecret`` (Feast online-store connection string).
        object_store: ``externalS3.existingSecret`` (static S3 keys). Empty, as in the chart:
            no keys, the pods use workload identity.

    Returns:
        One :class:`SecretEnv` per non-empty name.
    """
    wanted = (
        (
            database,
            {
                "registry-url": "METAREC_REGISTRY__DATABASE_URL",
                "feast-registry-url": "METAREC_FEAST__REGISTRY_URL",
            },
        ),
        (redis, {"connection-string": "METAREC_FEAST__REDIS_CONNECTION_STRING"}),
        (
            object_store,
            {"access-key-id": "AWS_ACCESS_KEY_ID", "secret-access-key": "AWS_SECRET_ACCESS_KEY"},
        ),
    )
    return tuple(SecretEnv(name=name, env=env) for name, env in wanted if name)


class KfpOptions(BaseModel):
    """Compile-time choices of the retrain pipeline (``metarec pipelines compile`` flags)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = Field(min_length=1, description="Platform image of every task (repo:tag).")
    object_store_root: str = Field(
        min_length=1,
        description="Default of the pipeline parameter `object_store_root`: runs write their "
        "training set, artifact, evaluation and gate decision under "
        "<root>/pipelines/<run id>/ (s3://, gs://, file:// or a plain path).",
    )
    secrets: tuple[SecretEnv, ...] = Field(
        default_factory=chart_secrets, description="Secrets exposed as env to every task."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Plain env of every task.")
    distributed: DistributedJobOptions = Field(
        default_factory=DistributedJobOptions,
        description="The TrainJob (or PyTorchJob) of a multi-node training step: engine, "
        "runtime, deadline, pods' ServiceAccount.",
    )

    @field_validator("object_store_root")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/") or value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(name for name in value if not re.match(_ENV_NAME, name))
        if bad:
            raise ValueError(f"not environment variable names: {bad}")
        return value


def image_reference(repository: str, *, tag: str = "", digest: str = "") -> str:
    """The image the chart's ``metarec.image`` helper renders: a digest wins over a tag.

    Args:
        repository: Image repository, optionally with a tag (``ghcr.io/acme/metarec:0.2.0``).
        tag: Tag replacing the repository's own (empty: keep it).
        digest: ``sha256:…`` digest (wins over any tag).

    Returns:
        ``repo@digest``, ``repo:tag`` or ``repository`` unchanged.
    """
    bare = repository.split("@", 1)[0]
    head, _, last = bare.rpartition("/")
    name = last.split(":", 1)[0]
    bare = f"{head}/{name}" if head else name
    if digest:
        return f"{bare}@{digest}"
    if tag:
        return f"{bare}:{tag}"
    return repository


def apply_cluster_options(task: Any, options: KfpOptions) -> Any:
    """Switch caching off and give ``task`` the Secrets and plain env of ``options``.

    Caching is off because every step reads or writes state outside its inputs (the current
    snapshot, the registry, production): a cached recurring run would never retrain.

    Returns:
        The same task, for chaining.
    """
    from kfp import kubernetes

    task.set_caching_options(enable_caching=False)
    for secret in options.secrets:
        kubernetes.use_secret_as_env(task, secret_name=secret.name, secret_key_to_env=secret.env)
    for name, value in sorted(options.env.items()):
        task.set_env_variable(name, value)
    return task


def apply_compute(task: Any, compute: ComputeSpec) -> Any:
    """Set CPU/memory, the accelerator, tolerations and node selector on a KFP ``PipelineTask``.

    Args:
        task: The ``kfp.dsl.PipelineTask`` of the training step.
        compute: The training compute spec.

    Returns:
        The same task, for chaining.

    Raises:
        ConfigError: ``compute`` asks for more than one node: a KFP task is one pod.
    """
    from kfp import kubernetes

    if compute.nodes > 1:
        raise ConfigError(
            f"The compute spec asks for {compute.nodes} nodes, but a KFP task is one pod.",
            fix="let the retrain pipeline train it: build_pipeline runs a multi-node compute "
            "spec as a TrainJob (or PyTorchJob) through its train_distributed_op step "
            "(distributed_request), not on a task of its own; or give this task one node "
            "(ComputeSpec.one_process()).",
        )
    task.set_cpu_request(compute.cpu_request).set_cpu_limit(compute.cpu_limit)
    task.set_memory_request(compute.memory_request).set_memory_limit(compute.memory_limit)
    if compute.gpu_count:
        task.set_accelerator_type(compute.gpu_resource)
        task.set_accelerator_limit(compute.gpu_count)
    for toleration in compute.effective_tolerations():
        kubernetes.add_toleration(
            task,
            key=toleration.key,
            operator=toleration.operator,
            value=toleration.value,
            effect=toleration.effect,
        )
    for key, value in compute.effective_node_selector().items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    return task


def secret_env(secrets: tuple[SecretEnv, ...]) -> list[dict[str, Any]]:
    """The Secrets of the tasks as Kubernetes ``EnvVar`` objects (``secretKeyRef``)."""
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}}}
        for secret in secrets
        for key, env in secret.env.items()
    ]


def distributed_request(compute: ComputeSpec, options: KfpOptions) -> str:
    """What the multi-node training step needs to create its job, as a JSON pipeline constant.

    The job's nodes run the image of the tasks with their env: the same Secrets (by reference)
    and plain env, so they reach the same stores (see
    :class:`~metarec.ops.distributed_training.DistributedTrainingRequest`). JSON, not a KFP
    struct: a struct holds no ``null`` (an unset GPU model, a toleration of every effect).
    """
    plain = [{"name": name, "value": value} for name, value in sorted(options.env.items())]
    request = {
        "image": options.image,
        "compute": compute.model_dump(mode="json"),
        "options": options.distributed.model_dump(mode="json"),
        "env": [*secret_env(options.secrets), *plain],
    }
    return json.dumps(request, sort_keys=True)

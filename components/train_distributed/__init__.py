"""Pipeline component: meta-train on several nodes through a TrainJob (or PyTorchJob).

A KFP task is one pod. When the compute spec asks for more than one training process (nodes ×
GPUs per node above 1, the chart's rule), the pipeline runs this step instead of
``train_model``: it creates a Kubeflow Trainer v2 ``TrainJob`` (or a training-operator
``PyTorchJob``) running ``torchrun … -m metarec train --out <artifact URI>`` on every node,
waits for its terminal condition, and returns the artifact URI that rank 0 uploaded. The step's
own pod requests no GPU.

Idempotent: the job's name comes from the artifact URI, so a retried step waits on the job it
created; it deletes nothing.
"""

from __future__ import annotations

import functools
from typing import Any

from metarec.components import component_settings
from pydantic import BaseModel, ConfigDict


class DistributedTrainOutput(BaseModel):
    """The artifact a distributed run uploaded, its lineage, and the job (JSON-able)."""

    model_config = ConfigDict(frozen=True)

    artifact: str
    algorithm: str
    dataset_fingerprint: str
    validation_result_id: str
    job_kind: str
    job_name: str
    namespace: str
    created: bool


def train_distributed(
    *,
    training_set: str,
    out: str,
    request: dict[str, Any],
    home: str | None = None,
    config: dict[str, Any] | None = None,
    api_client: Any = None,
) -> DistributedTrainOutput:
    """Meta-train on ``training_set`` as a distributed job writing its artifact to ``out``.

    Args:
        training_set: Validated training set URI.
        out: Artifact URI on the object store (pods share no disk).
        request: A :class:`~metarec.ops.distributed_training.DistributedTrainingRequest` as a
            dict: image, compute spec, engine, env, namespace (empty: the pod's own), timeout.
        home: MetaRec home (default: the configured one).
        config: Hyper-parameter overrides (device, algorithm, max_steps, seed).
        api_client: A ``kubernetes.client.ApiClient`` (default: the pod's ServiceAccount).

    Returns:
        The artifact URI and its lineage, and the job that wrote it.

    Raises:
        DistributedTrainingError: The job could not be created, failed (its reason), timed out,
            or left no model card at ``out``.
        ConfigError: An override the command line does not take, or no namespace.
    """
    from metarec.ops.distributed_training import (
        DistributedTrainingRequest,
        kubernetes_api_client,
        train_on_cluster,
    )

    component_settings(home)
    run = train_on_cluster(
        DistributedTrainingRequest.model_validate(request),
        training_set=training_set,
        out=out,
        config=config,
        api_client=api_client if api_client is not None else kubernetes_api_client(),
        on_progress=functools.partial(print, flush=True),
    )
    return DistributedTrainOutput(
        artifact=run.artifact,
        algorithm=str(run.card.algorithm),
        dataset_fingerprint=run.card.dataset_fingerprint,
        validation_result_id=run.card.validation_result_id,
        job_kind=run.kind,
        job_name=run.name,
        namespace=run.namespace,
        created=run.created,
    )

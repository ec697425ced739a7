"""The retraining pipeline on Kubeflow Pipelines v2, over the same component functions.

Each step is a thin shell that imports and calls a function of ``metarec.components`` inside the
platform image, so KFP and Prefect run exactly the same code. The steps become ``@dsl.component``s
when the pipeline is built, in the image of the compile options (:class:`KfpOptions`: repository
and tag or digest, as the chart's ``image`` values), with caching off, the chart's Secrets as env
(``kfp-kubernetes``) and URIs under the pipeline parameter ``object_store_root`` between them.
The training task carries the compute spec (accelerator, resources, tolerations, node selector)
and retries. A compute spec of more than one training process (nodes × GPUs per node above 1,
the chart's rule) trains instead through ``train_distributed_op``: a small pod, no GPU, that
creates a Kubeflow Trainer ``TrainJob`` (or a ``PyTorchJob``) of the compute spec, waits for it
and returns the artifact URI its rank 0 uploaded.

No ``from __future__ import annotations`` here: KFP reads the real annotation objects.
"""

from pathlib import Path
from typing import Any, NamedTuple

from kfp import compiler, dsl
from metarec.compute import ComputeSpec
from metarec.training.trainjob import is_distributed
from metarec.workflows.kfp_compute import (
    KfpOptions,
    apply_cluster_options,
    apply_compute,
    distributed_request,
)

PIPELINE_NAME = "metarec-retrain"
DESCRIPTION = "Validate → meta-train → evaluate → gate → register → canary → promote."
# Where a run writes, under the pipeline parameter `object_store_root`.
RUN_FOLDER = "pipelines"
# kfp.local runs the steps in this interpreter; a python image name says so (and keeps
# kfp.local from warning about a non-Python image).
LOCAL_IMAGE = "python:3.11"
# What the step that launches a distributed job asks for (it only polls the Kubernetes API).
LAUNCHER_CPU = "100m"
LAUNCHER_MEMORY = "512Mi"


def training_set_op(home: str, out: str) -> NamedTuple(
    "TrainingSet", [("path", str), ("fingerprint", str)]
):
    """Build the point-in-time training set through Feast, written to the URI ``out``."""
    from metarec.components.build_training_set import build_training_set

    built = build_training_set(home=home or None, out=out or None)
    return (built.path, built.fingerprint)


def validate_op(home: str, training_set: str) -> str:
    """Validate the training set; fails the run (listing every failed expectation) on drift."""
    from metarec.components.validate_features import validate_features

    return validate_features(training_set=training_set, home=home or None).result_id


def train_op(
    home: str, training_set: str, validation_result_id: str, config: dict, out: str
) -> str:
    """Meta-train on the validated training set into the URI ``out``; returns the artifact."""
    from metarec.components.train_model import train_model

    trained = train_model(
        training_set=training_set, home=home or None, config=config or None, out=out or None
    )
    if trained.validation_result_id != validation_result_id:
        raise RuntimeError(
            f"trained on validation result {trained.validation_result_id}, "
            f"expected {validation_result_id}"
        )
    return trained.artifact


def train_distributed_op(
    home: str, training_set: str, validation_result_id: str, config: dict, out: str, request: str
) -> str:
    """Meta-train on several nodes as a TrainJob or PyTorchJob writing to the URI ``out``.

    ``request``: the job's image, compute spec, engine and env, as JSON.
    """
    import json

    from metarec.components.train_distributed import train_distributed

    trained = train_distributed(
        training_set=training_set,
        out=out,
        request=json.loads(request),
        home=home or None,
        config=config or None,
    )
    if trained.validation_result_id != validation_result_id:
        raise RuntimeError(
            f"trained on validation result {trained.validation_result_id}, "
            f"expected {validation_result_id}"
        )
    return trained.artifact


def evaluate_op(home: str, artifact: str, training_set: str) -> str:
    """Cold-start evaluation; returns the metrics JSON path."""
    from metarec.components.evaluate_model import evaluate_model

    return evaluate_model(
        artifact=artifact, training_set=training_set, home=home or None
    ).metrics_json


def gate_op(home: str, artifact: str, training_set: str, policy: str) -> str:
    """The evaluation gate; fails the run on rejection. Returns the decision JSON path."""
    from metarec.components.gate_model import gate_model

    out = gate_model(
        artifact=artifact, home=home or None, policy=policy or None, training_set=training_set
    )
    return out.decision_path


def register_op(home: str, artifact: str, decision: str) -> NamedTuple(
    "Registered", [("tag", str), ("version", int)]
):
    """Register the gated artifact as a staging version."""
    from metarec.components.register_model import register_model

    out = register_model(artifact=artifact, decision=decision, home=home or None)
    return (out.tag, out.version)


def canary_op(home: str, version: int, training_set: str, canary: dict) -> NamedTuple(
    "Rollout", [("outcome", str), ("production_version", int)]
):
    """Canary the staging version against production and promote it; fails on rollback.

    On a cluster (router ``gateway-api``) the rollout controller carries the rollout out under
    real traffic and this task waits for its verdict; the first version is promoted directly.
    """
    from metarec.components.canary_rollout import canary_rollout

    out = canary_rollout(
        version=version, home=home or None, spec=canary or None, training_set=training_set
    )
    return (out.outcome, out.production_after or 0)


_OPS = (
    training_set_op,
    validate_op,
    train_op,
    train_distributed_op,
    evaluate_op,
    gate_op,
    register_op,
    canary_op,
)


def _components(image: str) -> dict[str, Any]:
    """The step functions as KFP components running in ``image`` (no kfp package installed)."""
    return {
        op.__name__: dsl.component(base_image=image, install_kfp_package=False)(op) for op in _OPS
    }


def _train_task(
    step: Any, *, compute: ComputeSpec, options: KfpOptions, retries: int, **inputs: Any
) -> Any:
    """The training task: in its own pod, or launching a distributed job (no GPU of its own)."""
    if is_distributed(compute):
        request = distributed_request(compute, options)
        task = step("train_distributed_op", request=request, **inputs)
        task.set_cpu_request(LAUNCHER_CPU).set_memory_request(LAUNCHER_MEMORY)
    else:
        task = apply_compute(step("train_op", **inputs), compute)
    return task.set_retry(num_retries=retries, backoff_duration="30s")


def build_pipeline(*, compute: ComputeSpec, options: KfpOptions, train_retries: int = 1) -> Any:
    """Return the retrain pipeline with the compute spec on its training task.

    Every task runs ``options.image`` with caching off and the Secrets and env of ``options``;
    steps hand each other URIs under ``<object_store_root>/pipelines/<run id>/``. Training
    runs in a pod, or as a TrainJob or PyTorchJob above one process (:func:`_train_task`).

    Args:
        compute: Compute spec of the training step.
        options: Image, object-store root, Secrets and env (compile options).
        train_retries: Retries of the training task (it resumes from its checkpoint).

    Returns:
        The ``@dsl.pipeline`` function.
    """
    ops = _components(options.image)

    def step(name: str, **inputs: Any) -> Any:  # every task: caching off, Secrets, env
        return apply_cluster_options(ops[name](**inputs), options)

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def retrain(
        home: str = "",
        object_store_root: str = options.object_store_root,
        training_config: dict = {},  # noqa: B006
        policy: str = "",
        canary: dict = {},  # noqa: B006
    ) -> None:
        run = f"{object_store_root}/{RUN_FOLDER}/{dsl.PIPELINE_JOB_ID_PLACEHOLDER}"
        built = step("training_set_op", home=home, out=f"{run}/training_set.parquet")
        training_set = built.outputs["path"]
        validated = step("validate_op", home=home, training_set=training_set)
        trained = _train_task(
            step,
            compute=compute,
            options=options,
            retries=train_retries,
            home=home,
            training_set=training_set,
            validation_result_id=validated.output,
            config=training_config,
            out=f"{run}/artifact",
        )
        evaluated = step(
            "evaluate_op", home=home, artifact=trained.output, training_set=training_set
        )
        gated = step(
            "gate_op", home=home, artifact=trained.output, training_set=training_set, policy=policy
        )
        gated.after(evaluated)
        registered = step("register_op", home=home, artifact=trained.output, decision=gated.output)
        step(
            "canary_op",
            home=home,
            version=registered.outputs["version"],
            training_set=training_set,
            canary=canary,
        )

    return retrain


def compile_pipeline(*, compute: ComputeSpec, options: KfpOptions, out: Path) -> Path:
    """Compile the retrain pipeline to KFP IR YAML at ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(compute=compute, options=options), str(out))
    return out


def run_locally(
    *,
    home: str,
    training_config: dict[str, Any] | None = None,
    policy: str = "",
    canary: dict[str, Any] | None = None,
    pipeline_root: Path,
    object_store_root: str | None = None,
) -> None:
    """Run the pipeline here with ``kfp.local.SubprocessRunner`` in this Python environment.

    Components run as subprocesses of this interpreter (no container, no pip: ``PIP_NO_INDEX``
    is set so nothing is fetched); the compute spec, image and Secrets are not used locally.
    Runs write under ``object_store_root`` (default: ``<pipeline_root>/store``).
    """
    import os

    from kfp import local

    os.environ.setdefault("PIP_NO_INDEX", "1")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    options = KfpOptions(
        image=LOCAL_IMAGE,
        object_store_root=object_store_root or str(pipeline_root / "store"),
        secrets=(),
    )
    pipeline = build_pipeline(compute=ComputeSpec(), options=options)
    pipeline(home=home, training_config=training_config or {}, policy=policy, canary=canary or {})

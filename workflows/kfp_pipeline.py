"""The retraining pipeline on Kubeflow Pipelines v2, over the same component functions.

Each ``@dsl.component`` is a thin shell that imports and calls a function of
``metarec.components`` inside the platform image (``base_image``, pinned), so KFP and Prefect run
exactly the same code. The training task carries the compute spec (accelerator, resources,
tolerations, node selector) and retries.

No ``from __future__ import annotations`` here: KFP reads the real annotation objects.
"""

from pathlib import Path
from typing import Any, NamedTuple

from kfp import compiler, dsl
from metarec.compute import ComputeSpec
from metarec.workflows.kfp_compute import apply_compute

PLATFORM_IMAGE = "ghcr.io/metarec/metarec:0.1.0"
PIPELINE_NAME = "metarec-retrain"


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def training_set_op(home: str) -> NamedTuple("TrainingSet", [("path", str), ("fingerprint", str)]):
    """Build the point-in-time training set through Feast."""
    from metarec.components.build_training_set import build_training_set

    out = build_training_set(home=home or None)
    return (out.path, out.fingerprint)


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def validate_op(home: str, training_set: str) -> str:
    """Validate the training set; fails the run (listing every failed expectation) on drift."""
    from metarec.components.validate_features import validate_features

    return validate_features(training_set=training_set, home=home or None).result_id


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def train_op(home: str, training_set: str, validation_result_id: str, config: dict) -> str:
    """Meta-train on the validated training set; returns the artifact folder."""
    from metarec.components.train_model import train_model

    out = train_model(training_set=training_set, home=home or None, config=config or None)
    if out.validation_result_id != validation_result_id:
        raise RuntimeError(
            f"trained on validation result {out.validation_result_id}, "
            f"expected {validation_result_id}"
        )
    return out.artifact


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def evaluate_op(home: str, artifact: str, training_set: str) -> str:
    """Cold-start evaluation; returns the metrics JSON path."""
    from metarec.components.evaluate_model import evaluate_model

    return evaluate_model(
        artifact=artifact, training_set=training_set, home=home or None
    ).metrics_json


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def gate_op(home: str, artifact: str, training_set: str, policy: str) -> str:
    """The evaluation gate; fails the run on rejection. Returns the decision JSON path."""
    from metarec.components.gate_model import gate_model

    out = gate_model(
        artifact=artifact, home=home or None, policy=policy or None, training_set=training_set
    )
    return out.decision_path


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def register_op(home: str, artifact: str, decision: str) -> NamedTuple(
    "Registered", [("tag", str), ("version", int)]
):
    """Register the gated artifact as a staging version."""
    from metarec.components.register_model import register_model

    out = register_model(artifact=artifact, decision=decision, home=home or None)
    return (out.tag, out.version)


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
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


def build_pipeline(*, compute: ComputeSpec, train_retries: int = 1) -> Any:
    """Return the retrain pipeline with the compute spec on its training task.

    Args:
        compute: Compute spec of the training step.
        train_retries: Retries of the training task (it resumes from its checkpoint).

    Returns:
        The ``@dsl.pipeline`` function.
    """

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Validate → meta-train → evaluate → gate → register → canary → promote.",
    )
    def retrain(
        home: str = "",
        training_config: dict = {},  # noqa: B006
        policy: str = "",
        canary: dict = {},  # noqa: B006
    ) -> None:
        training_set = training_set_op(home=home)
        validated = validate_op(home=home, training_set=training_set.outputs["path"])
        trained = train_op(
            home=home,
            training_set=training_set.outputs["path"],
            validation_result_id=validated.output,
            config=training_config,
        )
        apply_compute(trained, compute)
        trained.set_retry(num_retries=train_retries, backoff_duration="30s")
        evaluated = evaluate_op(
            home=home, artifact=trained.output, training_set=training_set.outputs["path"]
        )
        gated = gate_op(
            home=home,
            artifact=trained.output,
            training_set=training_set.outputs["path"],
            policy=policy,
        )
        gated.after(evaluated)
        registered = register_op(home=home, artifact=trained.output, decision=gated.output)
        canary_op(
            home=home,
            version=registered.outputs["version"],
            training_set=training_set.outputs["path"],
            canary=canary,
        )

    return retrain


def compile_pipeline(*, compute: ComputeSpec, out: Path) -> Path:
    """Compile the retrain pipeline to KFP IR YAML at ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(compute=compute), str(out))
    return out


def run_locally(
    *,
    home: str,
    training_config: dict[str, Any] | None = None,
    policy: str = "",
    canary: dict[str, Any] | None = None,
    pipeline_root: Path,
) -> None:
    """Run the pipeline here with ``kfp.local.SubprocessRunner`` in this Python environment.

    Components run as subprocesses of this interpreter (no container, no pip: ``PIP_NO_INDEX``
    is set so nothing is fetched); the compute spec is ignored locally.
    """
    import os

    from kfp import local

    os.environ.setdefault("PIP_NO_INDEX", "1")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    pipeline = build_pipeline(compute=ComputeSpec())
    pipeline(home=home, training_config=training_config or {}, policy=policy, canary=canary or {})

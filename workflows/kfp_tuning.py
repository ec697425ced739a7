"""Hyper-parameter search on Kubeflow Pipelines v2: Optuna workers fanned out by ``ParallelFor``.

The engine-free alternative to the chart's Katib Experiment. Three steps, each a thin shell over
a function of ``metarec.ops.tuning`` (the same functions ``metarec tune`` runs):

1. ``create_study_op`` creates the study (or loads it) on the shared Optuna storage, by default
   the registry's database (``METAREC_REGISTRY__DATABASE_URL`` from the chart's Secret);
2. a ``dsl.ParallelFor`` over ``workers`` branches, each ``tune_worker_op`` joining the study and
   running its share of the trials, with the training compute spec of one process (one GPU when
   the spec has GPUs: :meth:`~metarec.compute.ComputeSpec.one_process`);
3. ``gate_best_op`` re-trains the best trial's parameters and sends that candidate through the
   evaluation gate and registration, the study and trial in its model card.

Every task runs the compile options' image with caching off and the chart's Secrets as env
(:func:`~metarec.workflows.kfp_compute.apply_cluster_options`).

No ``from __future__ import annotations`` here: KFP reads the real annotation objects.
"""

from pathlib import Path
from typing import Any

from kfp import compiler, dsl
from metarec.compute import ComputeSpec
from metarec.workflows.kfp_compute import KfpOptions, apply_cluster_options, apply_compute

PIPELINE_NAME = "metarec-tune"
DESCRIPTION = (
    "Create the Optuna study → N workers run trials in parallel → gate and register the best."
)


def create_study_op(home: str, study: str, storage: str, space: str) -> str:
    """Create (or load) the study on the shared storage; returns its name."""
    from metarec.config import load_settings
    from metarec.ops.tuning import create_study

    settings = load_settings(**({"home": home} if home else {}))
    return create_study(
        settings, study=study or None, storage=storage or None, space=Path(space) if space else None
    )


def tune_worker_op(
    home: str, study: str, storage: str, space: str, training_set: str, trials: int
) -> int:
    """Join the study and run ``trials`` trials in this pod; returns the trials it ran."""
    from metarec.config import load_settings
    from metarec.ops.tuning import join_study

    settings = load_settings(**({"home": home} if home else {}))
    return join_study(
        settings,
        study=study,
        storage=storage or None,
        space=Path(space) if space else None,
        training_set=training_set or None,
        trials=trials,
    )


def gate_best_op(
    home: str, study: str, storage: str, space: str, training_set: str, policy: str
) -> int:
    """Re-train the best trial, gate it and register it; returns the registered version."""
    from metarec.config import load_settings
    from metarec.ops.tuning import gate_study_best

    settings = load_settings(**({"home": home} if home else {}))
    best = gate_study_best(
        settings,
        study=study,
        storage=storage or None,
        space=Path(space) if space else None,
        training_set=training_set or None,
        policy=Path(policy) if policy else None,
    )
    registered = best.registration.registered
    if registered is None:  # the gate rejected it: the run fails with the gate's reason
        from metarec.errors import GateRejectedError

        raise GateRejectedError(
            f"The evaluation gate rejected the best trial: {best.registration.decision.summary()}.",
            fix="see the study's reports; widen the search or review the gate policy.",
        )
    return registered.version


_OPS = (create_study_op, tune_worker_op, gate_best_op)


def _components(image: str) -> dict[str, Any]:
    """The step functions as KFP components running in ``image`` (no kfp package installed)."""
    return {
        op.__name__: dsl.component(base_image=image, install_kfp_package=False)(op) for op in _OPS
    }


def build_tuning_pipeline(*, compute: ComputeSpec, options: KfpOptions, workers: int = 2) -> Any:
    """Return the tuning pipeline: create the study, ``workers`` parallel workers, gate the best.

    Args:
        compute: The training compute spec; each worker and the best's re-training get one
            process of it (:meth:`~metarec.compute.ComputeSpec.one_process`).
        options: Image, Secrets and env of every task (compile options).
        workers: Parallel worker pods (``ParallelFor`` branches, all at once).

    Returns:
        The ``@dsl.pipeline`` function.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    ops = _components(options.image)
    trial_compute = compute.one_process()

    def step(name: str, **inputs: Any) -> Any:  # every task: caching off, Secrets, env
        return apply_cluster_options(ops[name](**inputs), options)

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def tune(
        home: str = "",
        study: str = "",
        storage: str = "",
        space: str = "",
        training_set: str = "",
        trials_per_worker: int = 10,
        policy: str = "",
    ) -> None:
        created = step("create_study_op", home=home, study=study, storage=storage, space=space)
        with dsl.ParallelFor(items=list(range(workers)), parallelism=workers):
            worker = step(
                "tune_worker_op",
                home=home,
                study=created.output,
                storage=storage,
                space=space,
                training_set=training_set,
                trials=trials_per_worker,
            )
            apply_compute(worker, trial_compute)
        best = step(
            "gate_best_op",
            home=home,
            study=created.output,
            storage=storage,
            space=space,
            training_set=training_set,
            policy=policy,
        )
        best.after(worker)
        apply_compute(best, trial_compute)

    return tune


def compile_tuning_pipeline(
    *, compute: ComputeSpec, options: KfpOptions, out: Path, workers: int = 2
) -> Path:
    """Compile the tuning pipeline to KFP IR YAML at ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_tuning_pipeline(compute=compute, options=options, workers=workers)
    compiler.Compiler().compile(pipeline, str(out))
    return out

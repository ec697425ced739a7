"""``metarec flows`` and ``metarec pipelines``: a plugin of the ``metarec`` command.

The core CLI finds these through its entry-point group (``pyproject.toml``), so the core never
imports Prefect or KFP; this module imports them only inside the commands.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

flows_app = typer.Typer(
    help="Prefect flows: run, serve on a schedule, deploy to Kubernetes.", no_args_is_help=True
)
pipelines_app = typer.Typer(
    help="Kubeflow Pipelines: compile, schedule, run locally.", no_args_is_help=True
)


class FlowName(StrEnum):
    """The flows MetaRec defines."""

    MATERIALIZE = "materialize"
    RETRAIN = "retrain"


def _training_config(path: Path | None) -> dict[str, Any] | None:
    import yaml

    return yaml.safe_load(path.read_text()) if path else None


@flows_app.command("run")
def run_flow(
    ctx: typer.Context,
    name: Annotated[FlowName, typer.Argument(help="Flow to run once, now.")],
    training_config: Annotated[
        Path | None, typer.Option(help="Retrain: YAML hyper-parameters.")
    ] = None,
    policy: Annotated[Path | None, typer.Option(help="Retrain: gate policy YAML.")] = None,
    canary_steps: Annotated[
        str | None, typer.Option(help="Retrain: canary weights in percent, e.g. 25,50,100.")
    ] = None,
    canary_interval: Annotated[
        str | None, typer.Option(help="Retrain: canary analysis window per step, e.g. 30s.")
    ] = None,
) -> None:
    """Run a flow once in this process (a temporary Prefect server is started when needed)."""
    from metarec.errors import MetaRecError
    from metarec.ops.canary_spec import parse_duration, parse_steps
    from metarec.workflows.prefect_flows import materialize_flow, retrain_flow

    settings = ctx.obj
    home = str(settings.paths.home)
    if name is FlowName.MATERIALIZE:
        flow, kwargs = (
            materialize_flow,
            {
                "source": settings.workflows.source,
                "path": settings.workflows.source_path,
                "home": home,
            },
        )
    else:
        flow, kwargs = (
            retrain_flow,
            {
                "home": home,
                "training_config": _training_config(
                    training_config or settings.workflows.training_config
                ),
                "policy": str(policy) if policy else None,
                "canary": {
                    **({"steps": list(parse_steps(canary_steps))} if canary_steps else {}),
                    **({"interval_s": parse_duration(canary_interval)} if canary_interval else {}),
                }
                or None,
            },
        )
    state = flow(**kwargs, return_state=True)
    if not state.is_completed():
        reason = state.result(raise_on_failure=False)
        raise MetaRecError(
            f"Flow {name.value} ended {state.type.value}: {reason}",
            fix="see the reason above; fix the input and run the flow again.",
        )
    typer.echo(f"Flow {name.value} completed: {state.result()}")


@flows_app.command("serve")
def serve_flows(ctx: typer.Context) -> None:
    """Serve both flows with their cron schedules from the settings (long-running, Ctrl-C stops).

    materialize: workflows.materialize_cron; retrain: workflows.retrain_cron.
    """
    from metarec.workflows.deployments import local_deployments
    from prefect import serve

    serve(*local_deployments(ctx.obj))


@flows_app.command("deploy")
def deploy_flows(
    ctx: typer.Context,
    work_pool: Annotated[
        str, typer.Option(help="Prefect Kubernetes work pool (created if missing).")
    ],
    base_job_template: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Template to create the pool with: the chart's ConfigMap "
            "<release>-metarec-prefect-job-template (kubectl get configmap … -o yaml) or its "
            "base-job-template.json key. Default: the built-in template rendered from "
            "training_compute (no Secrets env, hardening or volumes: for a pool no chart made).",
        ),
    ] = None,
    replace_template: Annotated[
        bool,
        typer.Option(
            "--replace-template",
            help="Replace an existing pool's base job template with --base-job-template (or "
            "the built-in one). Default: an existing pool keeps its template.",
        ),
    ] = False,
) -> None:
    """Deploy both flows to a Kubernetes work pool on their cron schedules (PREFECT_API_URL).

    The pool's base job template has one owner. An existing pool keeps its template: on a
    cluster installed with the Helm chart that is the chart's ConfigMap (MetaRec's env with
    Secrets by reference, pod hardening, volumes, service account, and training_compute's GPU
    limits, tolerations and node selector). A missing pool is created with --base-job-template,
    else with the built-in template rendered from training_compute. Where the pool's template
    disagrees with training_compute is printed as a warning. Flows run from workflows.image.
    """
    from metarec.workflows.deployments import TemplateAction, deploy_to_work_pool

    outcome = deploy_to_work_pool(
        ctx.obj,
        work_pool=work_pool,
        base_job_template=base_job_template,
        replace_template=replace_template,
    )
    if outcome.template is TemplateAction.KEPT:
        unused = (
            f" ({base_job_template} unused: add --replace-template)" if base_job_template else ""
        )
        typer.echo(f"Work pool {work_pool}: exists, its base job template is kept{unused}.")
    else:
        typer.echo(
            f"Work pool {work_pool}: base job template {outcome.template.value} from "
            f"{outcome.template_source}."
        )
    for line in outcome.drift:
        typer.echo(f"Warning: the pool's template differs from training_compute: {line}", err=True)
    for deployment_id in outcome.deployment_ids:
        typer.echo(f"Deployed {deployment_id} to work pool {work_pool}")


ImageOption = Annotated[
    str | None,
    typer.Option(
        "--image",
        help="Image repository, optionally :tag (chart image.repository). Default: "
        "workflows.image.",
    ),
]
TagOption = Annotated[str, typer.Option(help="Image tag (chart image.tag); replaces --image's.")]
DigestOption = Annotated[
    str, typer.Option(help="Image digest sha256:… (chart image.digest); wins over the tag.")
]
RootOption = Annotated[
    str | None,
    typer.Option(
        help="Object-store root the steps write under (s3://…). Default: "
        "registry.artifact_root, else the chart's s3://metarec/artifacts."
    ),
]
DatabaseSecretOption = Annotated[
    str, typer.Option(help="Secret with the database URLs (chart externalDatabase.existingSecret).")
]
RedisSecretOption = Annotated[
    str, typer.Option(help="Secret with the Redis string (chart externalRedis.existingSecret).")
]
S3SecretOption = Annotated[
    str,
    typer.Option(
        help="Secret with S3 keys (chart externalS3.existingSecret). Empty: workload identity."
    ),
]
EnvOption = Annotated[
    list[str] | None,
    typer.Option("--env", help="NAME=VALUE set in every step (repeatable), e.g. AWS_ENDPOINT_URL."),
]


class TrainingEngine(StrEnum):
    """What runs a training of several nodes or GPUs (the chart's training.distributed.operator)."""

    trainer = "trainer"
    training_operator = "training-operator"


TrainingEngineOption = Annotated[
    TrainingEngine,
    typer.Option(
        help="Training on several nodes or GPUs (training_compute): trainer, a Kubeflow Trainer "
        "TrainJob; training-operator, a PyTorchJob. The pipeline's launcher step creates it."
    ),
]
TrainingRuntimeOption = Annotated[
    str, typer.Option(help="The TrainJob's ClusterTrainingRuntime (engine trainer).")
]
TrainingServiceAccountOption = Annotated[
    str,
    typer.Option(
        help="ServiceAccount of the training job's pods (object store and database access). "
        "Empty: the namespace's default."
    ),
]


def _kfp_options(
    settings: Any,
    *,
    image: str | None,
    tag: str,
    digest: str,
    object_store_root: str | None,
    secrets: dict[str, str],
    env: list[str] | None,
    distributed: dict[str, str],
) -> Any:
    """The compile options of the KFP pipeline from the flags, falling back on the settings."""
    from metarec.errors import MetaRecError
    from metarec.training.trainjob import DistributedJobOptions
    from metarec.workflows.kfp_compute import KfpOptions, chart_secrets, image_reference
    from metarec.workflows.kfp_schedule import CHART_OBJECT_STORE_ROOT

    pairs = dict(item.partition("=")[::2] for item in env or [])
    bad = [item for item in env or [] if "=" not in item or not item.partition("=")[0]]
    if bad:
        raise MetaRecError(
            f"--env {bad[0]!r} is not NAME=VALUE.",
            fix="write it as e.g. --env AWS_REGION=eu-west-1.",
        )
    return KfpOptions(
        image=image_reference(image or settings.workflows.image, tag=tag, digest=digest),
        object_store_root=object_store_root
        or settings.registry.artifact_root
        or CHART_OBJECT_STORE_ROOT,
        secrets=chart_secrets(**secrets),
        # The chart's db-migrate hook Job migrates the registry; a task only checks the schema.
        env={
            "METAREC_FEAST__ENVIRONMENT": "cluster",
            "METAREC_REGISTRY__MIGRATE_ON_OPEN": "false",
            **pairs,
        },
        distributed=DistributedJobOptions(**distributed),
    )


@pipelines_app.command("compile")
def compile_pipeline_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="KFP IR YAML to write.")] = Path("metarec-retrain.yaml"),
    image: ImageOption = None,
    tag: TagOption = "",
    digest: DigestOption = "",
    object_store_root: RootOption = None,
    database_secret: DatabaseSecretOption = "metarec-database",
    redis_secret: RedisSecretOption = "metarec-redis",
    object_store_secret: S3SecretOption = "",
    env: EnvOption = None,
    training_engine: TrainingEngineOption = TrainingEngine.trainer,
    training_runtime: TrainingRuntimeOption = "torch-distributed",
    training_service_account: TrainingServiceAccountOption = "",
) -> None:
    """Compile the retrain pipeline (training task with the training_compute spec) to YAML.

    Every step runs the given image with caching off and the chart's Secrets as env.
    """
    from metarec.workflows.kfp_pipeline import compile_pipeline

    options = _kfp_options(
        ctx.obj,
        image=image,
        tag=tag,
        digest=digest,
        object_store_root=object_store_root,
        secrets={
            "database": database_secret,
            "redis": redis_secret,
            "object_store": object_store_secret,
        },
        env=env,
        distributed={
            "engine": training_engine.value,
            "runtime_name": training_runtime,
            "service_account": training_service_account,
        },
    )
    path = compile_pipeline(compute=ctx.obj.training_compute, options=options, out=out)
    typer.echo(f"Compiled {path} (image {options.image}, root {options.object_store_root})")


@pipelines_app.command("schedule")
def schedule_pipeline_command(
    ctx: typer.Context,
    cron: Annotated[str, typer.Option(help="Cron expression (five fields), e.g. '0 3 * * 1'.")],
    host: Annotated[str, typer.Option(help="KFP API endpoint.", envvar="KF_PIPELINES_ENDPOINT")],
    experiment: Annotated[str, typer.Option(help="KFP experiment.")] = "metarec",
    home: Annotated[str, typer.Option(help="METAREC_HOME inside the pipeline's pods.")] = "",
    image: ImageOption = None,
    tag: TagOption = "",
    digest: DigestOption = "",
    object_store_root: RootOption = None,
    database_secret: DatabaseSecretOption = "metarec-database",
    redis_secret: RedisSecretOption = "metarec-redis",
    object_store_secret: S3SecretOption = "",
    env: EnvOption = None,
    training_engine: TrainingEngineOption = TrainingEngine.trainer,
    training_runtime: TrainingRuntimeOption = "torch-distributed",
    training_service_account: TrainingServiceAccountOption = "",
) -> None:
    """Create a KFP recurring run of the retrain pipeline (the KFP client, training_compute).

    The pipeline is compiled with the same options as ``compile``.
    """
    from metarec.workflows.kfp_schedule import schedule_pipeline

    options = _kfp_options(
        ctx.obj,
        image=image,
        tag=tag,
        digest=digest,
        object_store_root=object_store_root,
        secrets={
            "database": database_secret,
            "redis": redis_secret,
            "object_store": object_store_secret,
        },
        env=env,
        distributed={
            "engine": training_engine.value,
            "runtime_name": training_runtime,
            "service_account": training_service_account,
        },
    )
    run_id = schedule_pipeline(
        host=host,
        cron=cron,
        compute=ctx.obj.training_compute,
        options=options,
        experiment=experiment,
        params={"home": home},
    )
    typer.echo(f"Recurring run {run_id} created ({cron}) in experiment {experiment}")


@pipelines_app.command("run-local")
def run_pipeline_locally(
    ctx: typer.Context,
    training_config: Annotated[Path | None, typer.Option(help="YAML hyper-parameters.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Gate policy YAML.")] = None,
) -> None:
    """Run the retrain pipeline here with kfp.local.SubprocessRunner (no cluster, no pip)."""
    from metarec.workflows.kfp_pipeline import run_locally

    settings = ctx.obj
    run_locally(
        home=str(settings.paths.home),
        training_config=_training_config(training_config or settings.workflows.training_config),
        policy=str(policy) if policy else "",
        pipeline_root=settings.paths.home / "kfp",
    )

"""``metarec train``, ``metarec evaluate`` and ``metarec retrain``.

Thin faces over :mod:`metarec.training` and the retrain use case (:func:`metarec.ops.retrain`).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from metarec.cli.console import console, training_progress
from metarec.cli.options import ActorOption, default_actor


class AlgorithmOption(enum.StrEnum):
    """Meta-learning algorithm choices on the command line."""

    MAML = "maml"
    FOMAML = "fomaml"
    REPTILE = "reptile"
    METASGD = "metasgd"


class DeviceOption(enum.StrEnum):
    """Compute device choices."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


# A local path or a URI (s3://, gs://, file://): read through fsspec, never made a local Path.
TrainingSetOption = Annotated[
    str | None,
    typer.Option(
        "--training-set",
        metavar="PATH|URI",
        help="Training set: a path or a URI (s3://bucket/ts.parquet) with its manifest (and, to "
        "train, its validation record) beside it (default: newest in <home>/training_sets).",
    ),
]

NO_RATINGS = (
    "This version learnt from implicit events: it ranks the catalogue and predicts no ratings "
    "(rating metrics skipped)."
)


def train(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file of training hyper-parameters.")
    ] = None,
    algorithm: Annotated[
        AlgorithmOption | None, typer.Option(help="Meta-learning algorithm (overrides config).")
    ] = None,
    device: Annotated[
        DeviceOption | None, typer.Option(help="auto picks CUDA when present (overrides config).")
    ] = None,
    training_set: TrainingSetOption = None,
    out: Annotated[
        str | None,
        typer.Option(
            metavar="PATH|URI",
            help="Artifact directory, or a URI (s3://…): trained in the home, then uploaded with "
            "its model card last (default: <home>/artifacts/<algorithm>-<time>).",
        ),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Outer steps (overrides config).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides config).")] = None,
) -> None:
    """Meta-train on a validated training set; write safetensors weights and a model card.

    Re-running the same command after an interruption resumes from the last checkpoint. Under
    `torchrun --nproc-per-node=G -m metarec train …` the meta-batch is split across the
    processes; rank 0 reports progress and writes the artifact.
    """
    from datetime import UTC, datetime

    from metarec.data.inputs import is_uri
    from metarec.features.training_set import newest_training_set
    from metarec.training.distributed import is_main_process
    from metarec.training.trainer import train as run_training

    settings = ctx.obj
    overrides = {
        "algorithm": algorithm.value if algorithm else None,
        "device": device.value if device else None,
        "max_steps": max_steps,
        "seed": seed,
    }
    cfg = _training_config(config, overrides)
    path = training_set or newest_training_set(settings)
    if out is not None and is_uri(out):
        _train_to_uri(settings, path, cfg, out)
        return
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = settings.paths.artifacts / f"{cfg.algorithm.value}-{stamp}"
    else:
        target = Path(out)
    if not is_main_process():  # another torchrun rank: rank 0 reports
        run_training(path, config=cfg, out=target)
        return
    with training_progress(cfg.algorithm.value) as report:
        card = run_training(path, config=cfg, out=target, on_progress=report)
    _print_trained(card)
    console.print(f"Artifact: {target}", soft_wrap=True, highlight=False)


def _training_config(path: Path | None, overrides: dict[str, Any]) -> Any:
    """The training config: the YAML file's with ``overrides`` over it, else the defaults'."""
    from metarec.training.config import TrainingConfig

    if path is not None:
        return TrainingConfig.from_yaml(path, **overrides)
    return TrainingConfig.build({k: v for k, v in overrides.items() if v is not None})


def _train_to_uri(settings: Any, path: Any, cfg: Any, url: str) -> None:
    """Train for the URI ``url`` (a pipeline's multi-node job): rank 0 uploads, card last.

    Every rank trains in the home's staging folder of ``url``; rank 0 then uploads it
    (:func:`metarec.ops.train_candidate`). A complete artifact already at ``url`` (a retried
    job) is seen by every rank, so none of them starts a run the others would wait on.
    """
    from metarec.ops import train_candidate
    from metarec.ops.locations import read_artifact_card
    from metarec.ops.retraining import staging_folder
    from metarec.training.distributed import is_main_process
    from metarec.training.trainer import train as run_training

    if read_artifact_card(url) is not None:
        console.print(f"Artifact: {url} (already complete)", soft_wrap=True, highlight=False)
        return
    if not is_main_process():
        run_training(path, config=cfg, out=staging_folder(settings, url))
        return
    with training_progress(cfg.algorithm.value) as report:
        trained = train_candidate(
            settings, training_set=path, config=cfg, out=url, on_progress=report
        )
    _print_trained(trained.card)
    console.print(f"Artifact: {url}", soft_wrap=True, highlight=False)


def _print_trained(card: Any) -> None:
    """What a training run reports: its rating metrics, or (events) its ranking tables."""
    from metarec.training.evaluation import metrics_table, ranking_tables

    if not card.predicts_ratings:
        for table in ranking_tables(card.ranking, title="Whole-catalogue ranking"):
            console.print(table)
        console.print(NO_RATINGS)
        return
    console.print(metrics_table(card.metrics, title=f"{card.algorithm} on held-out users"))
    console.print(
        f"Trained {card.training['steps']} steps (best at {card.training['best_step']}"
        f"{', stopped early' if card.training['stopped_early'] else ''})."
    )


def evaluate(
    ctx: typer.Context,
    artifact: Annotated[
        Path, typer.Argument(help="Artifact directory written by `metarec train`.")
    ],
    support_sizes: Annotated[
        list[str] | None,
        typer.Option(
            "--support-sizes",
            help="Support sizes: ints or 'all', e.g. --support-sizes 5 10 20 all.",
        ),
    ] = None,
    more_sizes: Annotated[
        list[str] | None,
        typer.Argument(hidden=True, help="The rest of the --support-sizes list."),
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="new_user, new_item, new_user_new_item (repeatable; default all)."),
    ] = None,
    training_set: TrainingSetOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the JSON and PNG (default: the artifact's).")
    ] = None,
    device: Annotated[DeviceOption, typer.Option(help="Compute device.")] = DeviceOption.CPU,
) -> None:
    """Evaluate an artifact and every baseline: print tables, write JSON and a PNG plot.

    Rating prediction (MAE, RMSE, nDCG inside the query set) for every scenario and support
    size; then, for an artifact with a catalogue ranker, the whole-catalogue ranking protocol
    (NDCG@20 of the served ranker and the item baselines, time and random order, K = 5/10/20).
    """
    from metarec.features.training_set import newest_training_set
    from metarec.training.artifact import read_card
    from metarec.training.evaluation import evaluate_artifact, metrics_table, plot_mae, write_json

    sizes, scenarios = _parse_cells(support_sizes, more_sizes, scenario)
    path = training_set or newest_training_set(ctx.obj)
    target = out or artifact
    if not read_card(artifact).predicts_ratings:
        console.print(NO_RATINGS)
        _evaluate_ranking(artifact, path, scenarios=scenarios, target=target)
        return
    with console.status("Evaluating"):
        metrics = evaluate_artifact(
            artifact, path, scenarios=scenarios, support_sizes=sizes or None, device=device.value
        )
    console.print(metrics_table(metrics, title=f"Cold-start evaluation of {artifact.name}"))
    json_path = write_json(metrics, target / "evaluation.json")
    png_path = plot_mae(metrics, target / "evaluation_mae.png")
    console.print(f"JSON: {json_path}", soft_wrap=True, highlight=False)
    console.print(f"Plot: {png_path}", soft_wrap=True, highlight=False)
    if read_card(artifact).ranker is None:
        console.print("No catalogue ranker in this artifact: whole-catalogue ranking skipped.")
        return
    _evaluate_ranking(artifact, path, scenarios=scenarios, target=target)


def _parse_cells(
    support_sizes: list[str] | None, more_sizes: list[str] | None, scenario: list[str] | None
) -> tuple[list[str], list[Any] | None]:
    """``--support-sizes 5 10,all`` and ``--scenario`` → support sizes and scenarios."""
    from metarec.errors import MetaRecError
    from metarec.training.scenarios import Scenario, parse_support_size

    if more_sizes and not support_sizes:
        raise MetaRecError(
            f"Unexpected arguments: {' '.join(more_sizes)}.",
            fix="give one artifact directory; list support sizes after --support-sizes.",
        )
    values = [*(support_sizes or []), *(more_sizes or [])]
    sizes = [s for value in values for s in value.replace(",", " ").split()]
    try:
        for size in sizes:
            parse_support_size(size)
        return sizes, [Scenario(s) for s in scenario] if scenario else None
    except ValueError as exc:
        raise MetaRecError(
            f"Invalid option ({exc}).",
            fix="support sizes are positive integers or 'all'; scenarios are "
            + ", ".join(s.value for s in Scenario)
            + ".",
        ) from exc


def _evaluate_ranking(
    artifact: Path, training_set: str | Path, *, scenarios: list[Any] | None, target: Path
) -> None:
    """The whole-catalogue ranking protocol: print its tables, write ``ranking.json``."""
    from metarec.training.evaluation import evaluate_ranking_artifact, ranking_tables, write_json

    with console.status("Ranking the catalogue"):
        ranking = evaluate_ranking_artifact(artifact, training_set, scenarios=scenarios)
    for table in ranking_tables(ranking, title=f"Whole-catalogue ranking of {artifact.name}"):
        console.print(table)
    ranking_path = write_json(ranking, target / "ranking.json")
    console.print(f"Ranking JSON: {ranking_path}", soft_wrap=True, highlight=False)


def retrain(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML file of training hyper-parameters (default: workflows.training_config).",
        ),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="Gate policy YAML (default: registry.gate_policy).")
    ] = None,
    actor: ActorOption = None,
) -> None:
    """Build the training set, validate it, meta-train, gate and register a new staging version.

    What the scheduled retrain does before its canary, here in this process.

    Exit code 4 when the gate rejects the candidate (the rejection is in the ledger).
    """
    from metarec.cli.model_views import print_decision
    from metarec.errors import GateRejectedError
    from metarec.ops import retrain as run_retrain
    from metarec.ops import training_config

    settings = ctx.obj
    hyperparameters = training_config(config_file=config or settings.workflows.training_config)
    with training_progress(hyperparameters.algorithm.value) as report:
        outcome = run_retrain(
            settings,
            config=hyperparameters,
            actor=actor or default_actor(),
            policy=policy,
            on_progress=report,
        )
    print_decision(outcome.registration.decision)
    info = outcome.registration.registered
    if info is None:
        raise GateRejectedError(
            f"{outcome.candidate.artifact} was not registered: "
            f"{outcome.registration.decision.summary()}.",
            fix="improve the candidate (or review the gate policy); the rejection is in "
            f"`metarec models history --model {settings.registry.model_name}`.",
        )
    console.print(
        f"[green]✓[/green] registered {info.tag} ([yellow]staging[/yellow]) from "
        f"{outcome.training_set.path}; start its canary with `metarec rollout start {info.tag}`."
    )

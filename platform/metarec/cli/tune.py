"""``metarec tune``, ``metarec tune worker`` and ``metarec tune trial``: faces over ops.tuning.

``tune`` runs a study over local worker processes, prints a line per finished trial and the
trials table, writes the reports, and gates and registers the best; ``tune worker`` joins an
existing study (a KFP ``ParallelFor`` branch, a pod); ``tune trial`` runs one trial with fixed
parameters and prints ``objective=<value>`` (Katib's StdOut metrics collector).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metarec.cli.console import console
from metarec.cli.options import ActorOption, ModelOption, default_actor

app = typer.Typer(
    help="Hyper-parameter optimisation on Optuna: a study of trials on a shared storage.",
    no_args_is_help=False,
)

SpaceOption = Annotated[
    Path | None,
    typer.Option("--space", help="Tuning file: search space, objective, pruner (YAML)."),
]
StudyOption = Annotated[
    str | None, typer.Option("--study", help="Study name (default: <registry.model_name>-tune).")
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage", help="Optuna storage URL (default: the registry's database).", metavar="URL"
    ),
]
TrainingSetOption = Annotated[
    str | None,
    typer.Option(
        "--training-set",
        metavar="PATH|URI",
        help="Validated training set (default: newest in <home>/training_sets).",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Base training config (YAML) the trials start from."),
]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout-s", help="Start no trial after this many seconds.")
]


def _trial_line(total: int | None) -> Any:
    """A callback printing one line per finished trial (its state and value).

    Optuna's own log lines (the same news, on stderr) are turned down to warnings.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = {"n": 0}

    def report(trial: Any) -> None:
        from metarec.tuning.reports import trial_row

        done["n"] += 1
        row = trial_row(trial)
        value = "" if row.value is None else f" value {row.value:.4f}"
        step = f" at step {row.last_step}" if row.state == "pruned" and row.last_step else ""
        seconds = "" if row.duration_s is None else f" [dim]({row.duration_s:.1f}s)[/dim]"
        count = f"{done['n']}/{total}" if total else str(done["n"])
        console.print(f"[{count}] trial {row.number} {row.state}{step}{value}{seconds}")

    return report


def _print_table(outcome: Any) -> None:
    """The study's trials table and counts."""
    from rich.table import Table

    rows = outcome.trials
    names = sorted({name for row in rows for name in row.params})
    table = Table(title=f"Study {outcome.study}: {outcome.objective} ({outcome.direction})")
    for column in ("trial", "state", "value", "step", *names):
        table.add_column(column)
    for row in rows:
        value = "" if row.value is None else f"{row.value:.4f}"
        params = [_text(row.params.get(name)) for name in names]
        table.add_row(str(row.number), row.state, value, str(row.last_step or ""), *params)
    console.print(table)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@app.callback(invoke_without_command=True)
def tune(
    ctx: typer.Context,
    space: SpaceOption = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials to run.")] = 20,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Local worker processes sharing the study.")
    ] = 1,
    study: StudyOption = None,
    storage: StorageOption = None,
    training_set: TrainingSetOption = None,
    config: ConfigOption = None,
    timeout_s: TimeoutOption = None,
    no_register: Annotated[
        bool, typer.Option("--no-register", help="Stop after the reports (no gate).")
    ] = False,
    model: ModelOption = None,
    policy: Annotated[Path | None, typer.Option(help="Gate policy YAML.")] = None,
    actor: ActorOption = None,
) -> None:
    """Run a study, print its trials, write reports; gate and register the best parameters.

    Exit code 4 when the gate rejects the best candidate (the rejection is in the ledger).
    """
    if ctx.invoked_subcommand is not None:
        return
    from metarec.cli.console import training_progress
    from metarec.ops.tuning import TuneRequest
    from metarec.ops.tuning import tune as run_tune

    request = TuneRequest(
        space=space,
        trials=trials,
        workers=workers,
        study=study,
        storage=storage,
        training_set=training_set,
        config=config,
        timeout_s=timeout_s,
        register_best=not no_register,
        model=model,
        policy=policy,
        actor=actor or default_actor(),
    )
    settings = ctx.obj
    console.print(f"Tuning: {trials} trials over {workers} worker(s).")
    with training_progress("best parameters") as report:
        outcome = run_tune(settings, request, on_trial=_trial_line(trials), on_progress=report)
    _print_outcome(outcome)


def _print_outcome(outcome: Any) -> None:
    """Table, counts, report paths, and the best candidate's gate decision."""
    from metarec.errors import GateRejectedError

    _print_table(outcome)
    counts = ", ".join(f"{n} {state}" for state, n in outcome.counts.items() if n)
    console.print(f"Trials: {counts}.")
    if outcome.best_trial is not None:
        console.print(
            f"Best: trial {outcome.best_trial}, {outcome.objective} {outcome.best_value:.4f}"
        )
    for name, path in outcome.reports.items():
        console.print(f"Report {name}: {path}", soft_wrap=True, highlight=False)
    if outcome.best is None:
        return
    from metarec.cli.model_views import print_decision

    registration = outcome.best.registration
    print_decision(registration.decision)
    if registration.registered is None:
        raise GateRejectedError(
            f"The best trial's candidate {outcome.best.candidate.artifact} was not registered: "
            f"{registration.decision.summary()}.",
            fix="widen the search or the trial budget (or review the gate policy); the "
            "rejection is in `metarec models history`.",
        )
    info = registration.registered
    console.print(
        f"[green]✓[/green] registered {info.tag} ([yellow]staging[/yellow]) from study "
        f"{outcome.study} trial {outcome.best_trial}."
    )


@app.command("worker")
def worker(
    ctx: typer.Context,
    study: Annotated[str, typer.Option("--study", help="The study to join (must exist).")],
    storage: StorageOption = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials this worker runs.")] = 1,
    space: SpaceOption = None,
    training_set: TrainingSetOption = None,
    config: ConfigOption = None,
    timeout_s: TimeoutOption = None,
) -> None:
    """Join an existing study, run N trials, exit (a KFP ParallelFor branch or a pod)."""
    from metarec.ops.tuning import join_study

    ran = join_study(
        ctx.obj,
        study=study,
        space=space,
        storage=storage,
        training_set=training_set,
        config=config,
        trials=trials,
        timeout_s=timeout_s,
        on_trial=_trial_line(trials),
    )
    console.print(f"Ran {ran} trial(s) of study {study}.")


@app.command("trial")
def trial(
    ctx: typer.Context,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="A fixed parameter, name=value (repeatable)."),
    ] = None,
    space: SpaceOption = None,
    training_set: TrainingSetOption = None,
    config: ConfigOption = None,
) -> None:
    """Run one trial with fixed parameters; print objective=<value> (Katib's metric line)."""
    from metarec.ops.tuning import run_fixed_trial

    result = run_fixed_trial(
        ctx.obj, params=param or [], space=space, training_set=training_set, config=config
    )
    metric = result.objective.replace("@", "_at_")  # Katib metric names: [\w-]+
    typer.echo(f"objective={result.value}")
    typer.echo(f"{metric}={result.value}")

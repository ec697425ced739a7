"""``metarec features profile`` and ``metarec features validate``: the feature validation gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from metarec.cli.console import console, stage
from metarec.config import Settings

TrainingSetOption = Annotated[
    str | None,
    typer.Option(
        "--training-set",
        help="Training set parquet built by `metarec features training-set`: a path or a URI "
        "(s3://…, gs://…, file://…) (default: the newest one in <home>/training_sets).",
    ),
]


def _training_set(settings: Settings, given: str | None) -> tuple[Path | str, str]:
    """The training set to read (the newest one when none is given) and its file name."""
    from metarec.features.training_set import as_location
    from metarec.validation.gate import newest_training_set

    location = as_location(given) if given else newest_training_set(settings)
    name = location.name if isinstance(location, Path) else location.rstrip("/").rsplit("/", 1)[-1]
    return location, name


def profile(ctx: typer.Context, training_set: TrainingSetOption = None) -> None:
    """Accept a training set as the reference profile that `validate` checks drift against.

    The training set must pass every integrity expectation (schema, keys, ranges, known
    categories, uniqueness, no future events). Each run stores a new profile version under
    <home>/validation/profiles/<feature service>/ (with feast.offline_root set: under
    <offline root>/validation/profiles/ on the object store, shared by every pod); nothing is
    written when it fails.
    """
    from metarec.validation.gate import build_reference_profile

    settings = ctx.obj
    path, name = _training_set(settings, training_set)
    with stage(f"Checking and profiling {name}"):
        reference, written = build_reference_profile(settings, training_set=path)
    stats = reference.statistics
    table = Table("statistic", "value", title=f"Reference profile {reference.label}")
    table.add_row("rows", f"{stats.row_count:,}")
    table.add_row("users", f"{stats.user_count:,}")
    table.add_row("mean rating", f"{stats.mean_rating:.4f}")
    for rating, share in stats.rating_shares.items():
        table.add_row(f"share of rating {rating}", f"{share:.4f}")
    for quantile, value in stats.ratings_per_user_quantiles.items():
        table.add_row(f"ratings per user, q{quantile:g}", f"{value:g}")
    console.print(table)
    console.print(f"Profile {reference.label} ({reference.dataset_fingerprint}) → {written}")


def validate(
    ctx: typer.Context,
    training_set: TrainingSetOption = None,
    progress: Annotated[
        bool, typer.Option(help="Show Great Expectations' own progress bars (off by default).")
    ] = False,
) -> None:
    """Validate a training set with its feature service's expectation suite (the gate).

    Prints every expectation with pass/fail and the observed value, writes an HTML report and
    a JSON result under <home>/validation/results/, and the validation record beside the
    training set that training requires. Exit code 0 when it passes, 1 when it fails.
    Drift is judged against the reference profile: run `metarec features profile` first.
    """
    from metarec.validation.gate import raise_for_failure
    from metarec.validation.gate import validate_training_set as run_gate

    settings = ctx.obj
    path, name = _training_set(settings, training_set)
    with stage(f"Validating {name}"):
        result = run_gate(settings, training_set=path, progress_bars=progress)
    table = Table(title=f"Suite {result.suite_name} {result.suite_version}")
    table.add_column("", no_wrap=True)
    width = max(len(item.name) for item in result.expectations)
    table.add_column("expectation", overflow="fold", min_width=min(width, 48))
    table.add_column("kind", no_wrap=True)
    table.add_column("observed", overflow="fold")
    table.add_column("expected", overflow="fold")
    for item in result.expectations:
        mark = "[green]✓ pass[/green]" if item.success else "[red]✗ fail[/red]"
        table.add_row(
            mark, escape(item.name), item.kind, escape(item.observed), escape(item.expected)
        )
    console.print(table)
    stats = result.statistics
    verdict = "[green]PASSED[/green]" if result.success else "[red]FAILED[/red]"
    console.print(
        f"{verdict}: {stats.successful}/{stats.evaluated} expectations passed on "
        f"{result.rows:,} rows ({result.dataset_fingerprint}), "
        f"reference {result.reference_profile}",
        soft_wrap=True,
    )
    console.print(f"Report: {result.report_html}", soft_wrap=True, highlight=False)
    console.print(
        f"Result: {result.result_json} (id {result.result_id})", soft_wrap=True, highlight=False
    )
    raise_for_failure(result)

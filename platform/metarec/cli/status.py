"""``metarec status``: one screen with the state of a model's loop (:mod:`metarec.ops.status`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from metarec import metrics_contract as contract
from metarec.cli.console import console

if TYPE_CHECKING:
    from metarec.ops.status import RolloutLine, StatusReport

STAGE_COLOURS = {"production": "green", "staging": "yellow"}
# Rows named for what they are: the card's hit@10 is user-level (any held-out liked item in the
# top 10), the online hit rate is per positive feedback event; they are not comparable.
ROW_NAMES = {contract.OFFLINE_HIT_RATE: "offline_hit@10 (user-level)"}
HIT_RATE_NOTE = (
    "offline_hit@10 (user-level): share of the card's users with any held-out liked item in the "
    "top 10; online_hit_rate: share of positive feedback items that were in the served list. "
    "Not comparable."
)


def status(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="Registered model (default: registry.model_name).")
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            help="Read the services' live quality and drift (rollout.prometheus_url, else "
            "their /metrics at rollout.production_url and canary_url)."
        ),
    ] = True,
    features: Annotated[
        bool, typer.Option(help="Read feature freshness from the Feast registry.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """The state of the loop on one screen.

    Production and staging versions, the last gate decision, the active (else latest)
    rollout and its canary weight, live online quality and drift per version, feature
    freshness, and the last and next scheduled retrain.
    """
    from metarec.ops.status import gather_status

    report = gather_status(ctx.obj, model=model, live=live, features=features)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    for table in _tables(report):
        console.print(table)


def _ago(at: datetime | None, now: datetime) -> str:
    """``2026-12-08 01:02 UTC (3h ago)``; ``never`` for None."""
    if at is None:
        return "never"
    seconds = (now - at).total_seconds()
    hours = abs(seconds) / 3600
    span = f"{hours / 24:.1f}d" if hours >= 48 else f"{hours:.1f}h" if hours >= 1 else ""
    span = span or f"{abs(seconds) / 60:.0f}m"
    when = f"in {span}" if seconds < 0 else f"{span} ago"
    return f"{at:%Y-%m-%d %H:%M} UTC ({when})"


def _tables(report: StatusReport) -> list[Table | Text]:
    now = report.at
    loop = Table(title=f"MetaRec status: {report.model}", show_header=False, title_justify="left")
    loop.add_column(style="bold")
    loop.add_column()
    production = report.production
    loop.add_row(
        "production",
        "none"
        if production is None
        else f"[green]{production.tag}[/green] (registered {_ago(production.created_at, now)})",
    )
    staging = ", ".join(f"[yellow]{v.tag}[/yellow]" for v in report.staging) or "none"
    loop.add_row("staging", staging)
    gate = report.last_gate
    loop.add_row(
        "last gate",
        "none"
        if gate is None
        else f"{'[green]passed[/green]' if gate.accepted else '[red]rejected[/red]'} "
        f"{_ago(gate.at, now)} by {escape(gate.actor)}: {escape(gate.summary)}",
    )
    loop.add_row("rollout", _rollout_text(report.rollout))
    retrain = report.retrain
    loop.add_row(
        "retrain",
        f"last {_ago(retrain.last_at, now)}; next {_ago(retrain.next_at, now)} "
        f"(cron '{retrain.cron}'){' ' + escape(retrain.problem) if retrain.problem else ''}",
    )
    return [loop, *_live_tables(report), *_freshness_tables(report)]


def _rollout_text(rollout: RolloutLine | None) -> str:
    if rollout is None:
        return "none"
    state = "[bold]active[/bold]" if rollout.active else "ended"
    return (
        f"{state} {rollout.phase}: v{rollout.version} vs production v{rollout.production_version}"
        f", canary weight {rollout.canary_weight} %"
        f"{' (' + escape(rollout.message) + ')' if rollout.message else ''}"
    )


def _live_tables(report: StatusReport) -> list[Table | Text]:
    """One row per series, one column per served version (versions are few, series many)."""
    live = report.live
    if live is None:
        return []
    table = Table(title=f"Live quality and drift ({live.source})", title_justify="left")
    # Online quality is always a row: "—" until the service has scored feedback (not 0).
    always = (contract.ONLINE_MAE, contract.ONLINE_HIT_RATE) if live.versions else ()
    keys = sorted({key for version in live.versions for key in version.values}.union(always))
    table.add_column("series")
    for version in live.versions:
        table.add_column(escape(version.model_version), justify="right")
    for key in keys:
        values = (_number(version.values.get(key)) for version in live.versions)
        table.add_row(escape(ROW_NAMES.get(key, key.removeprefix("metarec_"))), *values)
    if not live.versions:
        table.add_row("none: no served version exported these series")
    elif any(key not in version.values for key in keys for version in live.versions):
        table.caption = "—: not exported (no feedback yet)"
    shown: list[Table | Text] = [table]
    if contract.OFFLINE_HIT_RATE in keys:
        shown.append(Text(HIT_RATE_NOTE, style="dim"))
    if live.unreachable:
        failed = ", ".join(f"{url} ({why})" for url, why in live.unreachable.items())
        shown.append(Text(f"not reachable: {failed}", style="red"))
    return shown


def _freshness_tables(report: StatusReport) -> list[Table]:
    freshness = report.freshness
    if freshness is None:
        return []
    table = Table(title="Feature freshness", title_justify="left")
    table.add_column("feature view")
    table.add_column("last materialised")
    for view, end in sorted(freshness.views.items()):
        table.add_row(view, _ago(end, report.at))
    if freshness.problem:
        table.add_row("[red]unavailable[/red]", escape(freshness.problem))
    elif not freshness.views:
        table.add_row("none applied", "run `metarec features apply`")
    return [table]


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if value.is_integer() and abs(value) >= 10 else f"{value:.3f}"

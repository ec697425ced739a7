"""``metarec models``, ``metarec gate`` and ``metarec api``: the registry from the shell.

Thin faces over :class:`metarec.registry.Registry` and the use cases in :mod:`metarec.ops`
(:func:`~metarec.ops.gate_candidate`, :func:`~metarec.ops.register_candidate`).
"""

from __future__ import annotations

import getpass
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from metarec.cli.console import console
from metarec.config import Settings
from metarec.errors import GateRejectedError, InvalidTransitionError

app = typer.Typer(
    help="Model registry: list, show, register, promote, rollback, archive, history.",
    no_args_is_help=True,
)


class StageOption(StrEnum):
    """Stages ``list --stage`` accepts."""

    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class TargetStage(StrEnum):
    """Stages ``promote --to`` accepts."""

    PRODUCTION = "production"


def _actor() -> str:
    try:
        return os.environ.get("METAREC_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


ModelOption = Annotated[
    str | None, typer.Option("--model", help="Registered model (default: registry.model_name).")
]
ActorOption = Annotated[
    str | None, typer.Option("--actor", help="Who acts (default: $METAREC_ACTOR or the user).")
]


def _open(settings: Settings) -> Any:
    from metarec.registry import Registry

    return Registry.open(settings)


def _ref(settings: Settings, text: str, model: str | None) -> Any:
    from metarec.registry import VersionRef

    return VersionRef.parse(text, default_model=model or settings.registry.model_name)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_decision(decision: Any) -> None:
    """Print a gate decision: every check with its numbers, then the verdict."""
    table = Table(title=f"Evaluation gate — policy {decision.policy_name!r}", show_lines=False)
    for column in (
        "",
        "rule",
        "scenario",
        "support/cell",
        "candidate",
        "reference",
        "observed",
        "detail",
    ):
        table.add_column(column)
    for check in decision.checks:
        reference = "-"
        if check.reference is not None:
            reference = f"{check.reference_name}={check.reference:.4f}"
        elif check.reference_name:
            reference = str(check.reference_name)
        table.add_row(
            "[green]✓[/green]" if check.passed else "[red]✗[/red]",
            check.rule,
            check.scenario,
            check.support_size,
            _fmt(check.value),
            reference,
            _fmt(check.observed),
            check.detail,
        )
    console.print(table)
    print_ranking_summary(decision)
    console.print(
        f"candidate method: {decision.candidate_method}; production: "
        f"{'none' if decision.production_version is None else f'v{decision.production_version}'}"
        f" ({decision.comparison_basis}); artifact {decision.artifact_digest[:12]}"
    )
    for note in decision.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if decision.accepted:
        console.print(f"[green]ACCEPTED[/green]: {decision.summary()}")
    else:
        console.print(f"[red]REJECTED[/red]: {decision.summary()}")


def print_ranking_summary(decision: Any) -> None:
    """One table per scenario: methods as rows, ranking cells as columns (nDCG@20).

    The served ranker comes first, then production (when compared), then every baseline.
    """
    rows = decision.ranking_summary
    if not rows:
        return
    candidate = decision.ranking_method or "candidate"
    for scenario in dict.fromkeys(row.scenario for row in rows):
        cells = [row for row in rows if row.scenario == scenario]
        table = Table(
            "method",
            *(row.cell for row in cells),
            title=f"{scenario}: {cells[0].metric} by support order@K "
            f"({decision.ranking_comparison_basis or 'no production'})",
        )
        table.add_row(f"[bold]{candidate}[/bold]", *(_fmt(row.candidate) for row in cells))
        if any(row.production is not None for row in cells):
            table.add_row("production", *(_fmt(row.production) for row in cells))
        for name in sorted({name for row in cells for name in row.baselines}):
            table.add_row(name, *(_fmt(row.baselines.get(name)) for row in cells))
        console.print(table)


TrainingSetOption = Annotated[
    Path | None,
    typer.Option(
        "--training-set",
        help="The candidate's training set: production is then re-evaluated on the candidate's "
        "held-out users (default: production's stored metrics are used).",
    ),
]


def gate(
    ctx: typer.Context,
    artifact: Annotated[Path, typer.Argument(help="Artifact folder (weights + model card).")],
    model: ModelOption = None,
    policy: Annotated[
        Path | None, typer.Option(help="Gate policy YAML (default: registry.gate_policy).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the decision as JSON here.")
    ] = None,
    training_set: TrainingSetOption = None,
) -> None:
    """Evaluate a candidate against the gate policy; print every number and rule.

    Exit code 0 when accepted, 4 when rejected. Nothing is registered.
    """
    from metarec.ops import gate_candidate

    settings: Settings = ctx.obj
    decision = gate_candidate(
        settings,
        artifact=artifact,
        model=model or settings.registry.model_name,
        policy=policy,
        training_set=training_set,
    )
    print_decision(decision)
    if json_out is not None:
        json_out.write_text(decision.model_dump_json(indent=2))
        console.print(f"decision written to {json_out}")
    if not decision.accepted:
        raise typer.Exit(GateRejectedError.exit_code)


@app.command("list")
def list_versions(
    ctx: typer.Context,
    model: ModelOption = None,
    stage: Annotated[StageOption | None, typer.Option(help="Only this stage.")] = None,
) -> None:
    """List the versions of a model with stage, algorithm and gate result."""
    from metarec.registry import Stage

    settings: Settings = ctx.obj
    name = model or settings.registry.model_name
    with _open(settings) as registry:
        models = {summary.name for summary in registry.list_models()}
        if name not in models:
            others = ", ".join(sorted(models)) or "none"
            console.print(f"No versions of {name!r} yet (registered models: {others}).")
            console.print("Register one with `metarec models register ARTIFACT`.")
            return
        versions = registry.list_versions(name, stage=Stage(stage.value) if stage else None)
    table = Table(title=f"Model {name!r}")
    for column in ("version", "stage", "algorithm", "dataset", "gate", "created", "by", "digest"):
        table.add_column(column)
    colours = {"production": "green", "staging": "yellow", "archived": "dim"}
    for info in versions:
        gate_result = "-"
        if info.gate_decision:
            gate_result = "accepted" if info.gate_decision.get("accepted") else "rejected"
        table.add_row(
            f"v{info.version}",
            f"[{colours[info.stage.value]}]{info.stage.value}[/]",
            info.lineage.algorithm or "-",
            (info.lineage.dataset_fingerprint or "-")[:19],
            gate_result,
            info.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            info.created_by,
            info.digest[:12],
        )
    console.print(table)


def _print_history(entries: list[Any]) -> None:
    table = Table(title="Ledger")
    for column in (
        "#",
        "when (UTC)",
        "who",
        "action",
        "version",
        "from → to",
        "reason",
        "evidence",
    ):
        table.add_column(column, overflow="fold")
    for entry in entries:
        evidence = dict(entry.evidence)
        gate_decision = evidence.pop("gate", None)
        text = json.dumps(evidence, sort_keys=True) if evidence else ""
        if gate_decision:
            verdict = "accepted" if gate_decision.get("accepted") else "rejected"
            text = f"gate {verdict} ({len(gate_decision.get('checks', []))} checks) {text}"
        table.add_row(
            str(entry.id),
            entry.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            entry.actor,
            entry.action.value,
            "-" if entry.version is None else f"v{entry.version}",
            f"{entry.from_stage or '∅'} → {entry.to_stage or '∅'}",
            entry.reason,
            text.strip(),
        )
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="3, v3 or <model>:v3.")],
    model: ModelOption = None,
) -> None:
    """Show a version: stage, artifact, full lineage, gate decision and its ledger."""
    from metarec.gate.decision import GateDecision

    settings: Settings = ctx.obj
    ref = _ref(settings, version, model)
    with _open(settings) as registry:
        info = registry.get_version(ref)
        entries = registry.history(ref.model, version=ref.version)
    console.print(f"[bold]{info.tag}[/bold]  stage: [bold]{info.stage.value}[/bold]")
    lineage = Table(show_header=False, title="Lineage")
    lineage.add_column("field")
    lineage.add_column("value", overflow="fold")
    rows = {
        "artifact": info.artifact_uri,
        "digest": info.digest,
        "files (sha256)": "\n".join(f"{n}  {s}" for n, s in sorted(info.files.items())),
        "bentoml tag": info.bento_tag or "-",
        "registered": f"{info.created_at:%Y-%m-%d %H:%M:%S} by {info.created_by}",
        **{
            key.replace("_", " "): str(value) if value is not None else "-"
            for key, value in info.lineage.model_dump(
                exclude={"training_config", "metrics", "test_users"}
            ).items()
        },
        "training config": json.dumps(info.lineage.training_config, sort_keys=True),
        "test users": ", ".join(
            f"{scenario}: {len(users)}" for scenario, users in info.lineage.test_users.items()
        )
        or "-",
    }
    for key, value in rows.items():
        lineage.add_row(key, value)
    console.print(lineage)
    metrics = info.lineage.metrics
    if metrics:
        table = Table(title="Metrics (MAE / RMSE / nDCG@5)")
        for column in ("scenario", "support", "method", "mae", "rmse", "ndcg@5"):
            table.add_column(column)
        for scenario, by_size in metrics.items():
            for size, by_method in by_size.items():
                for method, values in by_method.items():
                    table.add_row(
                        scenario,
                        str(size),
                        method,
                        *(_fmt(values.get(key)) for key in ("mae", "rmse", "ndcg@5")),
                    )
        console.print(table)
    if info.gate_decision:
        print_decision(GateDecision.model_validate(info.gate_decision))
    _print_history(entries)


@app.command()
def register(
    ctx: typer.Context,
    artifact: Annotated[Path, typer.Argument(help="Artifact folder (weights + model card).")],
    model: ModelOption = None,
    policy: Annotated[
        Path | None, typer.Option(help="Gate policy YAML (default: registry.gate_policy).")
    ] = None,
    reason: Annotated[
        str, typer.Option(help="Why (kept in the ledger).")
    ] = "registered after passing the evaluation gate",
    actor: ActorOption = None,
    training_set: TrainingSetOption = None,
) -> None:
    """Gate a candidate and, if accepted, register it as a new staging version.

    A rejected candidate is not registered; the rejection is recorded in the ledger.
    """
    from metarec.ops import register_candidate

    settings: Settings = ctx.obj
    name = model or settings.registry.model_name
    outcome = register_candidate(
        settings,
        artifact=artifact,
        model=name,
        policy=policy,
        training_set=training_set,
        actor=actor or _actor(),
        reason=reason,
        on_decision=print_decision,
    )
    info = outcome.registered
    if info is None:
        raise GateRejectedError(
            f"{artifact} was not registered: {outcome.decision.summary()}.",
            fix="improve the candidate (or review the gate policy); the rejection is in "
            f"`metarec models history --model {name}`.",
        )
    console.print(
        f"[green]✓[/green] registered {info.tag} ([yellow]staging[/yellow]), artifact "
        f"{info.artifact_uri}" + (f", BentoML model {info.bento_tag}" if info.bento_tag else "")
    )


@app.command()
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="3, v3 or <model>:v3.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")],
    to: Annotated[TargetStage, typer.Option("--to", help="Target stage.")] = (
        TargetStage.PRODUCTION
    ),
    model: ModelOption = None,
    actor: ActorOption = None,
    expect_production: Annotated[
        str | None,
        typer.Option(
            help="Fail unless this version (or 'none') is in production when the promotion "
            "commits (default: the one in production when the command starts)."
        ),
    ] = None,
    evidence: Annotated[
        Path | None, typer.Option(help="JSON file with evidence (e.g. a canary verdict).")
    ] = None,
) -> None:
    """Promote a version to production; the previous production version is archived."""
    from metarec.registry import UNSET, VersionRef

    settings: Settings = ctx.obj
    ref = _ref(settings, version, model)
    expected: Any = UNSET
    if expect_production is not None:
        expected = (
            None
            if expect_production.lower() == "none"
            else VersionRef.parse(expect_production, default_model=ref.model).version
        )
    extra: Any = {}
    if evidence is not None:
        try:
            extra = json.loads(evidence.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidTransitionError(
                f"Evidence file {evidence} cannot be read as JSON ({exc}).",
                fix="pass an existing file holding a JSON object.",
            ) from exc
    if not isinstance(extra, dict):
        raise InvalidTransitionError(
            f"Evidence file {evidence} does not hold a JSON object.",
            fix="write the evidence as a JSON object ({...}).",
        )
    with _open(settings) as registry:
        previous = registry.production_version(ref.model)
        info = registry.promote(
            ref,
            actor=actor or _actor(),
            reason=reason,
            evidence=extra,
            expected_production=expected,
        )
    archived = "" if previous is None else f"; v{previous} archived"
    console.print(f"[green]✓[/green] {info.tag} is now in {to.value}{archived}")


@app.command()
def rollback(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")],
    model: ModelOption = None,
    actor: ActorOption = None,
) -> None:
    """Promote the previous production version again (the current one is archived)."""
    settings: Settings = ctx.obj
    name = model or settings.registry.model_name
    with _open(settings) as registry:
        previous = registry.production_version(name)
        info = registry.rollback(name, actor=actor or _actor(), reason=reason)
    replaced = "" if previous is None else f" (v{previous} archived)"
    console.print(f"[green]✓[/green] rolled back: {info.tag} is in production again{replaced}")


@app.command()
def archive(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="3, v3 or <model>:v3.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")],
    model: ModelOption = None,
    actor: ActorOption = None,
) -> None:
    """Archive a staging or production version."""
    settings: Settings = ctx.obj
    ref = _ref(settings, version, model)
    with _open(settings) as registry:
        info = registry.archive(ref, actor=actor or _actor(), reason=reason)
    console.print(f"[green]✓[/green] {info.tag} archived")


@app.command()
def history(
    ctx: typer.Context,
    model: ModelOption = None,
    version: Annotated[str | None, typer.Option(help="Only this version.")] = None,
) -> None:
    """Print the ledger: every registration, rejection, promotion, rollback and archive."""
    settings: Settings = ctx.obj
    name = model or settings.registry.model_name
    number = None if version is None else _ref(settings, version, name).version
    with _open(settings) as registry:
        entries = registry.history(name, version=number)
    _print_history(entries)


def api(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
) -> None:
    """Serve the control-plane API (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from metarec.api import create_app

    settings: Settings = ctx.obj
    if settings.registry.api_token is None:
        console.print(
            "[yellow]note:[/yellow] registry.api_token is not set: mutating calls will be refused."
        )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")

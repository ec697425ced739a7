"""``metarec models``, ``metarec gate`` and ``metarec api``: the registry from the shell.

Thin faces over the use cases in :mod:`metarec.ops` (gate, register, promote, roll back,
archive) and the registry's reads; how things are printed is in :mod:`metarec.cli.model_views`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from metarec.cli.console import console
from metarec.cli.model_views import print_decision, print_history, print_version, print_versions
from metarec.cli.options import ActorOption, ModelOption, default_actor, version_ref
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


def _open(settings: Settings) -> Any:
    from metarec.registry import Registry

    return Registry.open(settings)


TrainingSetOption = Annotated[
    Path | None,
    typer.Option(
        "--training-set",
        help="The candidate's training set: production is then re-evaluated on the candidate's "
        "held-out users, and the candidate's card metrics are verified by re-evaluating it on "
        "them (a mismatch rejects it). Default: production's stored metrics are used and the "
        "candidate's are taken from its card, unverified (the decision notes it).",
    ),
]
PolicyOption = Annotated[
    Path | None, typer.Option(help="Gate policy YAML (default: registry.gate_policy).")
]
ReasonOption = Annotated[str, typer.Option(help="Why (kept in the ledger).")]
VersionArgument = Annotated[str, typer.Argument(help="3, v3 or <model>:v3.")]
ArtifactArgument = Annotated[Path, typer.Argument(help="Artifact folder (weights + model card).")]


def gate(
    ctx: typer.Context,
    artifact: ArtifactArgument,
    model: ModelOption = None,
    policy: PolicyOption = None,
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
    print_versions(name, versions)


@app.command()
def show(ctx: typer.Context, version: VersionArgument, model: ModelOption = None) -> None:
    """Show a version: stage, artifact, full lineage, gate decision and its ledger."""
    from metarec.gate.decision import GateDecision

    settings: Settings = ctx.obj
    ref = version_ref(settings, version, model)
    with _open(settings) as registry:
        info = registry.get_version(ref)
        entries = registry.history(ref.model, version=ref.version)
    print_version(info)
    if info.gate_decision:
        print_decision(GateDecision.model_validate(info.gate_decision))
    print_history(entries)


@app.command()
def register(
    ctx: typer.Context,
    artifact: ArtifactArgument,
    model: ModelOption = None,
    policy: PolicyOption = None,
    reason: ReasonOption = "registered after passing the evaluation gate",
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
        actor=actor or default_actor(),
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


def _expected_production(text: str | None, *, model: str) -> Any:
    """``--expect-production``: a version, ``none``, or unset (the one in production now)."""
    from metarec.registry import UNSET, VersionRef

    if text is None:
        return UNSET
    if text.lower() == "none":
        return None
    return VersionRef.parse(text, default_model=model).version


def _read_evidence(path: Path | None) -> dict[str, Any]:
    """``--evidence``: a JSON object from a file (none: empty)."""
    if path is None:
        return {}
    try:
        evidence = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidTransitionError(
            f"Evidence file {path} cannot be read as JSON ({exc}).",
            fix="pass an existing file holding a JSON object.",
        ) from exc
    if not isinstance(evidence, dict):
        raise InvalidTransitionError(
            f"Evidence file {path} does not hold a JSON object.",
            fix="write the evidence as a JSON object ({...}).",
        )
    return evidence


@app.command()
def promote(
    ctx: typer.Context,
    version: VersionArgument,
    reason: ReasonOption,
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
    from metarec.ops import promote as promote_version

    settings: Settings = ctx.obj
    ref = version_ref(settings, version, model)
    done = promote_version(
        settings,
        ref=ref,
        actor=actor or default_actor(),
        reason=reason,
        evidence=_read_evidence(evidence),
        expected_production=_expected_production(expect_production, model=ref.model),
    )
    previous = done.production_before
    archived = "" if previous is None else f"; v{previous} archived"
    console.print(f"[green]✓[/green] {done.version.tag} is now in {to.value}{archived}")


@app.command()
def rollback(
    ctx: typer.Context,
    reason: ReasonOption,
    model: ModelOption = None,
    actor: ActorOption = None,
) -> None:
    """Promote the previous production version again (the current one is archived)."""
    from metarec.ops import rollback as roll_back

    settings: Settings = ctx.obj
    done = roll_back(
        settings,
        model=model or settings.registry.model_name,
        actor=actor or default_actor(),
        reason=reason,
    )
    previous = done.production_before
    replaced = "" if previous is None else f" (v{previous} archived)"
    console.print(
        f"[green]✓[/green] rolled back: {done.version.tag} is in production again{replaced}"
    )


@app.command()
def archive(
    ctx: typer.Context,
    version: VersionArgument,
    reason: ReasonOption,
    model: ModelOption = None,
    actor: ActorOption = None,
) -> None:
    """Archive a staging or production version."""
    from metarec.ops import archive as archive_version

    settings: Settings = ctx.obj
    done = archive_version(
        settings,
        ref=version_ref(settings, version, model),
        actor=actor or default_actor(),
        reason=reason,
    )
    console.print(f"[green]✓[/green] {done.version.tag} archived")


@app.command()
def history(
    ctx: typer.Context,
    model: ModelOption = None,
    version: Annotated[str | None, typer.Option(help="Only this version.")] = None,
) -> None:
    """Print the ledger: every registration, rejection, promotion, rollback and archive."""
    settings: Settings = ctx.obj
    name = model or settings.registry.model_name
    number = None if version is None else version_ref(settings, version, name).version
    with _open(settings) as registry:
        entries = registry.history(name, version=number)
    print_history(entries)


def api(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
) -> None:
    """Serve the control-plane API (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from metarec.api import create_app

    settings: Settings = ctx.obj
    if settings.registry.api_token is None and settings.registry.api_tokens_file is None:
        console.print(
            "[yellow]note:[/yellow] neither registry.api_tokens_file nor registry.api_token "
            "is set: authenticated calls will be refused."
        )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")

"""``metarec db …``: migrate the registry database once, as its owner, and grant the roles."""

from __future__ import annotations

from typing import Annotated

import typer

from metarec.cli.console import console
from metarec.config import Settings

app = typer.Typer(
    help="The registry database: migrations (run once, as the owner) and least-privilege roles.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command("upgrade")
def upgrade(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Migrate the registry schema to head and grant the configured roles their privileges.

    Run it with the owner's database URL (registry.database_url); the roles named in
    registry.database_roles must exist (PostgreSQL; SQLite has no roles).
    """
    from metarec.ops.database import upgrade_registry

    settings: Settings = ctx.obj
    result = upgrade_registry(settings)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    before = result.from_revision or "empty"
    console.print(
        f"registry database {result.url}: {before} → {result.to_revision}", highlight=False
    )
    for statement in result.grants:
        console.print(f"  {statement}", highlight=False)
    if result.note:
        console.print(f"  {result.note}", highlight=False)


@app.command("status")
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the schema revision versus head and what each configured role holds."""
    from metarec.ops.database import registry_database_status

    settings: Settings = ctx.obj
    result = registry_database_status(settings)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    state = "at head" if result.at_head else "NOT at head: run `metarec db upgrade`"
    console.print(
        f"registry database {result.url}: revision {result.current_revision or 'none'} "
        f"(head {result.head_revision}, {state})",
        highlight=False,
    )
    for workload, role in result.roles.items():
        console.print(f"  {workload}: role {role}", highlight=False)
        for line in result.grants.get(role, []) or ["(no privileges)"]:
            console.print(f"    {line}", highlight=False)
    if result.note:
        console.print(f"  {result.note}", highlight=False)

"""The ``metarec`` command: thin faces over the platform functions.

Every deliberate error is printed as one line (what is wrong and the fix), with a non-zero exit
code and no traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.20 vendors click privately; older releases use click itself.
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions

from metarec import __version__
from metarec.cli import data, features, models
from metarec.cli import database as database_cli
from metarec.cli import learning as learning_cli
from metarec.cli import rollout as rollout_cli
from metarec.cli import serve as serve_cli
from metarec.cli import status as status_cli
from metarec.cli import tune as tune_cli
from metarec.cli.console import err_console
from metarec.config import load_settings
from metarec.environment import apply_process_environment
from metarec.errors import MetaRecError

app = typer.Typer(
    name="metarec",
    help="MetaRec: meta-learned recommenders, from features to a few-shot serving canary.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.command("train")(learning_cli.train)
app.command("evaluate")(learning_cli.evaluate)
app.command("retrain")(learning_cli.retrain)
app.add_typer(models.app, name="models")
app.command("gate")(models.gate)
app.command("api")(models.api)
app.add_typer(rollout_cli.app, name="rollout")
app.command("serve")(serve_cli.serve)
app.command("status")(status_cli.status)
app.add_typer(tune_cli.app, name="tune")
app.add_typer(database_cli.app, name="db")


def _add_plugins(root_app: typer.Typer) -> None:
    """Add the ``metarec.cli`` entry points: typer apps as groups, functions as commands."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="metarec.cli"):
        plugin = entry.load()
        if isinstance(plugin, typer.Typer):
            root_app.add_typer(plugin, name=entry.name)
        else:
            root_app.command(entry.name)(plugin)


_add_plugins(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"metarec {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML settings file (default: $METAREC_CONFIG). Environment variables "
            "METAREC_* override it.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Load settings and prepare the process environment for every command."""
    settings = load_settings(config_file=config)
    apply_process_environment(settings)
    ctx.obj = settings


def run(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code (errors printed, never raised)."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="metarec")
    except click_exceptions.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
            return 0
        command = exc.ctx.command_path if exc.ctx else "metarec"
        err_console.print(
            f"[red]error:[/red] {exc.format_message()} Fix: see `{command} --help`.",
            highlight=False,
            soft_wrap=True,
        )
        return exc.exit_code
    except click_exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except typer.Abort:
        err_console.print("Aborted.")
        return 130
    except MetaRecError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))

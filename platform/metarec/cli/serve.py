"""``metarec serve``: run the BentoML adaptation service for one registry version."""

from __future__ import annotations

import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metarec.cli.console import console
from metarec.config import Settings

if TYPE_CHECKING:
    from metarec.registry.service import Registry
    from metarec.registry.types import VersionInfo, VersionRef


class ServeStage(StrEnum):
    """Stages that can be served without naming a version."""

    PRODUCTION = "production"
    STAGING = "staging"


def serve(
    ctx: typer.Context,
    version: Annotated[
        str | None,
        typer.Option("--version", help="Version to serve: 3, v3 or <model>:v3."),
    ] = None,
    stage: Annotated[
        ServeStage | None,
        typer.Option(help="Serve the version in this stage (default: production)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface (default: serving.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: serving.port).")] = None,
) -> None:
    """Serve a model version over HTTP (bentoml serve): /recommend, /predict, /feedback.

    The version is resolved, verified and loaded once before the server starts: one that cannot
    load exits non-zero here with one line (BentoML would restart its worker forever), and so
    does a server whose worker then fails to start (e.g. features not materialised). Served by
    stage (no --version), the service follows the registry's new version of the stage.
    """
    from metarec.errors import ConfigError
    from metarec.serving.process import serve_command
    from metarec.serving.startup import supervise

    settings: Settings = ctx.obj
    if version and stage:
        raise ConfigError(
            "--version and --stage were both given.", fix="pass one of them, not both."
        )
    chosen_stage = (stage or ServeStage(settings.serving.stage)).value
    ref, info = _checked(settings, version=version, stage=chosen_stage)
    bind_host = host or settings.serving.host
    bind_port = port or settings.serving.port
    # A stage (not a pinned version) is served as a stage: the service follows the registry
    # when the stage's version changes (serving.registry_poll_seconds).
    pinned = version or settings.serving.version
    argv, env = serve_command(
        settings,
        version=ref.tag if pinned else None,
        stage=None if pinned else chosen_stage,
        host=bind_host,
        port=bind_port,
    )
    console.print(
        f"Serving [bold]{ref.tag}[/bold] ({info.stage.value}) at http://{bind_host}:{bind_port}"
        " — POST /recommend /predict /feedback, GET /metadata, /metrics, /readyz"
    )
    # Run the server as a child, passing signals (Ctrl-C, a supervisor's SIGTERM) on to it: a
    # worker that cannot start ends it with one line (metarec.serving.startup), where BentoML
    # alone would restart the worker forever.
    sys.stdout.flush()
    code = supervise(argv, env)
    if code:  # a server ended by signal N exits 128 + N, as a shell reports it
        raise typer.Exit(code if code > 0 else 128 - code)


def _checked(
    settings: Settings, *, version: str | None, stage: str
) -> tuple[VersionRef, VersionInfo]:
    """The version to serve, resolved, its files re-hashed and loaded once (:func:`check_loads`)."""
    from metarec.registry.service import Registry
    from metarec.serving.loading import resolve_version

    with Registry.open(settings) as registry:
        ref = resolve_version(
            registry,
            model=settings.registry.model_name,
            version=version or settings.serving.version,
            stage=stage,
        )
        info = registry.verify(ref)
        check_loads(registry, ref, info, settings=settings)
    return ref, info


def check_loads(
    registry: Registry, ref: VersionRef, info: VersionInfo, *, settings: Settings
) -> None:
    """Load the version as the service will (weights checked against the card), then drop it.

    Raises:
        ServingModelError: The version cannot be loaded (a missing or altered file, weights that
            do not fit the card, anything else the service's worker would fail on), in one line
            naming the version.
    """
    from metarec.errors import MetaRecError, ServingModelError
    from metarec.serving.loading import load_served_folder
    from metarec.serving.startup import one_line

    with tempfile.TemporaryDirectory(prefix="metarec-serve-check-") as tmp:
        folder = Path(tmp) / "artifact"
        try:
            registry.fetch(ref, folder)
            load_served_folder(
                folder, info=info, adaptation_steps=settings.serving.adaptation_steps
            )
        except MetaRecError as exc:
            problem = one_line(exc.problem).replace(str(folder), ref.tag)
            raise ServingModelError(f"{ref.tag} cannot be served: {problem}", fix=exc.fix) from exc
        except Exception as exc:  # anything else the worker would crash-loop on
            raise ServingModelError(
                f"{ref.tag} cannot be loaded for serving ({type(exc).__name__}: "
                f"{one_line(str(exc))}).",
                fix="re-register the artifact `metarec train` wrote, or serve another version "
                "with --version V.",
            ) from exc

"""``metarec serve``: run the BentoML adaptation service for one registry version."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Annotated

import typer

from metarec.cli.console import console
from metarec.config import Settings


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

    The version is resolved and checksum-verified before the server starts, so a missing or
    tampered version fails here with one line. Served by stage (no --version), the service
    follows the registry: it loads the stage's new version when it changes.
    """
    from metarec.errors import ConfigError
    from metarec.registry.service import Registry
    from metarec.serving.loading import resolve_version
    from metarec.serving.process import serve_command

    settings: Settings = ctx.obj
    if version and stage:
        raise ConfigError(
            "--version and --stage were both given.", fix="pass one of them, not both."
        )
    chosen_stage = (stage or ServeStage(settings.serving.stage)).value
    with Registry.open(settings) as registry:
        ref = resolve_version(
            registry,
            model=settings.registry.model_name,
            version=version or settings.serving.version,
            stage=chosen_stage,
        )
        info = registry.verify(ref)
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
    # Become the server process: signals (Ctrl-C, SIGTERM from a supervisor) reach BentoML
    # directly, and no parent is left behind to orphan it.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)

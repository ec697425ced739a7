"""Options several commands share: who acts, which model, how a version is written."""

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING, Annotated

import typer

from metarec.config import Settings

if TYPE_CHECKING:
    from metarec.registry import VersionRef

ModelOption = Annotated[
    str | None, typer.Option("--model", help="Registered model (default: registry.model_name).")
]
ActorOption = Annotated[
    str | None, typer.Option("--actor", help="Who acts (default: $METAREC_ACTOR or the user).")
]


def default_actor() -> str:
    """``$METAREC_ACTOR``, else the login name, else ``unknown``."""
    try:
        return os.environ.get("METAREC_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def version_ref(settings: Settings, text: str, model: str | None) -> VersionRef:
    """``3``, ``v3`` or ``<model>:v3`` → a version reference (default model: the configured)."""
    from metarec.registry import VersionRef

    return VersionRef.parse(text, default_model=model or settings.registry.model_name)

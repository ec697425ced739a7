"""What the routes depend on: the open registry, the token checks, the gate's evaluators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from metarec.api.auth import check_token
from metarec.config import Settings
from metarec.gate.run import Evaluator, RankingEvaluator
from metarec.registry import Registry
from metarec.registry.types import MODEL_NAME_PATTERN


@dataclass(frozen=True)
class Evaluators:
    """Re-evaluate production on the candidate's held-out users in the gate (None: stored)."""

    rating: Evaluator | None = None
    ranking: RankingEvaluator | None = None


def _get_settings(request: Request) -> Settings:
    return request.app.state.settings


def _get_registry(request: Request) -> Registry:
    current = request.app.state.registry
    if current is None:  # used without the lifespan (e.g. some test clients)
        current = request.app.state.registry = Registry.open(request.app.state.settings)
    return current


def _get_evaluators(request: Request) -> Evaluators:
    return request.app.state.evaluators


Config = Annotated[Settings, Depends(_get_settings)]
Reg = Annotated[Registry, Depends(_get_registry)]
Evaluation = Annotated[Evaluators, Depends(_get_evaluators)]
_bearer = HTTPBearer(auto_error=False, description="The token in registry.api_token.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def writer(settings: Config, credentials: Credentials) -> None:
    """Mutating calls: the configured bearer token is required."""
    check_token(credentials, expected=settings.registry.api_token)


def reader(settings: Config, credentials: Credentials) -> None:
    """Read calls: the token is required only when registry.read_requires_token is set."""
    if settings.registry.read_requires_token:
        check_token(credentials, expected=settings.registry.api_token)


READ = [Depends(reader)]
WRITE = [Depends(writer)]

ModelName = Annotated[
    str, PathParam(pattern=MODEL_NAME_PATTERN, description="Registered model name.")
]
VersionNumber = Annotated[int, PathParam(ge=1, le=1_000_000_000, description="Version number.")]

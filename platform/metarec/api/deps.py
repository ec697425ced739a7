"""What the routes depend on: the open registry, the caller and its roles, the evaluators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from metarec.api.auth import authorize, caller_of
from metarec.api.identities import Identity, Role
from metarec.config import Settings
from metarec.gate.run import Evaluator, RankingEvaluator
from metarec.notify import Notifier
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


def _get_notifier(request: Request) -> Notifier:
    return request.app.state.notifier


Config = Annotated[Settings, Depends(_get_settings)]
Reg = Annotated[Registry, Depends(_get_registry)]
Evaluation = Annotated[Evaluators, Depends(_get_evaluators)]
Notify = Annotated[Notifier, Depends(_get_notifier)]
# Documents the scheme in OpenAPI; the token itself is checked by the guard (metarec.api.guard).
_bearer = HTTPBearer(auto_error=False, description="The token of an API identity.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require(*roles: Role) -> Callable[[Request, HTTPAuthorizationCredentials | None], Identity]:
    """A dependency accepting a caller that holds one of ``roles`` (401 / 403 otherwise)."""

    def check(request: Request, _credentials: Credentials) -> Identity:
        return authorize(caller_of(request), roles)

    return check


def reader(request: Request, settings: Config, _credentials: Credentials) -> None:
    """Read calls: a ``reader`` identity only when registry.read_requires_token is set."""
    if settings.registry.read_requires_token:
        authorize(caller_of(request), (Role.READER,))


def _caller(request: Request) -> Identity:
    return authorize(caller_of(request), tuple(Role))


Caller = Annotated[Identity, Depends(_caller)]
"""The authenticated caller: its name is the ledger's actor."""

READ = [Depends(reader)]
DEPLOY = [Depends(require(Role.DEPLOYER))]
TRANSITION = [Depends(require(Role.DEPLOYER, Role.CONTROLLER))]
FLAGGER = [Depends(require(Role.FLAGGER))]

ModelName = Annotated[
    str, PathParam(pattern=MODEL_NAME_PATTERN, description="Registered model name.")
]
VersionNumber = Annotated[int, PathParam(ge=1, le=1_000_000_000, description="Version number.")]

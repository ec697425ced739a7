"""FastAPI application factory for the control plane.

The same operations as ``metarec models`` and ``metarec gate``. Mutating calls (and ``/gate``,
which reads server-side files) need ``Authorization: Bearer <registry.api_token>``; read calls
need it too when ``registry.read_requires_token`` is set. Every deliberate error is a JSON body
``{error, problem, fix}`` with a 4xx status; OpenAPI is served at ``/openapi.json`` and
``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from metarec import __version__
from metarec.api.auth import check_token
from metarec.api.schemas import ErrorBody, GateRequest, Health, RegisterRequest, TransitionRequest
from metarec.config import Settings
from metarec.errors import (
    ArtifactChecksumError,
    ArtifactError,
    AuthError,
    GatePolicyError,
    GateRejectedError,
    InvalidTransitionError,
    MetaRecError,
    ModelNotFoundError,
    RegistryConflictError,
    RegistryError,
    VersionNotFoundError,
)
from metarec.gate.decision import GateDecision
from metarec.gate.run import Evaluator, RankingEvaluator
from metarec.ops import gate_candidate, register_candidate
from metarec.registry.service import UNSET, Registry
from metarec.registry.types import (
    MODEL_NAME_PATTERN,
    LedgerEntry,
    ModelSummary,
    Stage,
    VersionInfo,
    VersionRef,
)

_STATUS: list[tuple[type[MetaRecError], int]] = [
    (AuthError, 401),
    (ModelNotFoundError, 404),
    (VersionNotFoundError, 404),
    (RegistryConflictError, 409),
    (InvalidTransitionError, 409),
    (ArtifactChecksumError, 409),
    (GateRejectedError, 422),
    (ArtifactError, 422),
    (GatePolicyError, 422),
    (RegistryError, 503),
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 404, 409, 422, 503)
}

ModelName = Annotated[
    str, PathParam(pattern=MODEL_NAME_PATTERN, description="Registered model name.")
]
VersionNumber = Annotated[int, PathParam(ge=1, le=1_000_000_000, description="Version number.")]


def _get_registry(request: Request) -> Registry:
    current = request.app.state.registry
    if current is None:  # used without the lifespan (e.g. some test clients)
        current = request.app.state.registry = Registry.open(request.app.state.settings)
    return current


Reg = Annotated[Registry, Depends(_get_registry)]
_bearer = HTTPBearer(auto_error=False, description="The token in registry.api_token.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _writer(request: Request, credentials: Credentials) -> None:
    """Mutating calls: the configured bearer token is required."""
    check_token(credentials, expected=request.app.state.settings.registry.api_token)


def _reader(request: Request, credentials: Credentials) -> None:
    """Read calls: the token is required only when registry.read_requires_token is set."""
    settings = request.app.state.settings
    if settings.registry.read_requires_token:
        check_token(credentials, expected=settings.registry.api_token)


def _status_of(error: MetaRecError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 400


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    evaluate: Evaluator | None = None,
    evaluate_ranking: RankingEvaluator | None = None,
) -> FastAPI:
    """Build the control-plane application.

    Args:
        settings: MetaRec settings (registry location, token, gate policy).
        registry: An open registry to use (default: open the configured one at startup and
            close it at shutdown).
        evaluate: Re-evaluates production's rating metrics on the candidate's held-out users
            in the gate.
        evaluate_ranking: Re-evaluates production's ranking table on the candidate's held-out
            users in the gate.

    Returns:
        The FastAPI application.
    """
    owned = registry is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.registry is None:
            app.state.registry = Registry.open(settings)
        try:
            yield
        finally:
            if owned and app.state.registry is not None:
                app.state.registry.close()
                app.state.registry = None

    app = FastAPI(
        title="MetaRec control plane",
        version=__version__,
        description="Model registry, evaluation gate and promotion ledger. Mutating calls need "
        "`Authorization: Bearer <token>`.",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.state.registry = registry
    app.state.settings = settings

    read = [Depends(_reader)]
    write = [Depends(_writer)]

    @app.exception_handler(MetaRecError)
    async def _metarec_error(_request: Request, exc: MetaRecError) -> JSONResponse:
        status = _status_of(exc)
        detail = getattr(exc, "decision", None)  # the gate decision of a rejection
        body = ErrorBody(error=type(exc).__name__, problem=exc.problem, fix=exc.fix, detail=detail)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body.model_dump(), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The offending input is not echoed: it may not be JSON-encodable (NaN, bytes).
        errors = [
            {"type": str(e.get("type")), "loc": list(e.get("loc", ())), "msg": str(e.get("msg"))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/healthz", tags=["health"])
    def healthz(reg: Reg) -> Health:
        """Liveness and readiness: the registry database answers."""
        return Health(status="ok", database=reg.ping())

    @app.get("/models", dependencies=read, tags=["models"])
    def list_models(reg: Reg) -> list[ModelSummary]:
        """Every registered model with its version count and production version."""
        return reg.list_models()

    @app.get("/models/{model}/versions", dependencies=read, tags=["models"])
    def list_versions(
        reg: Reg, model: ModelName, stage: Annotated[Stage | None, Query()] = None
    ) -> list[VersionInfo]:
        """The versions of a model, oldest first (optionally of one stage)."""
        return reg.list_versions(model, stage=stage)

    @app.get("/models/{model}/versions/{version}", dependencies=read, tags=["models"])
    def show_version(reg: Reg, model: ModelName, version: VersionNumber) -> VersionInfo:
        """One version with its lineage and gate decision."""
        return reg.get_version(VersionRef(model=model, version=version))

    @app.get("/models/{model}/production", dependencies=read, tags=["models"])
    def production(reg: Reg, model: ModelName) -> VersionInfo:
        """The production version of a model (404 when there is none)."""
        info = reg.production(model)
        if info is None:
            reg.list_versions(model)  # 404 for an unknown model
            raise VersionNotFoundError(
                f"Model {model!r} has no production version.",
                fix=f"promote one: POST /models/{model}/versions/{{version}}/promote.",
            )
        return info

    @app.get("/models/{model}/history", dependencies=read, tags=["ledger"])
    def history(
        reg: Reg,
        model: ModelName,
        version: Annotated[int | None, Query(ge=1, le=1_000_000_000)] = None,
    ) -> list[LedgerEntry]:
        """The append-only ledger of a model (optionally of one version), oldest first."""
        return reg.history(model, version=version)

    @app.post("/gate", dependencies=write, tags=["gate"])
    def gate(
        reg: Reg,
        body: GateRequest,
        model: Annotated[str, Query(pattern=MODEL_NAME_PATTERN)] = settings.registry.model_name,
    ) -> GateDecision:
        """Run the evaluation gate on an artifact folder on the server; nothing is stored."""
        return gate_candidate(
            settings,
            artifact=Path(body.artifact),
            model=model,
            registry=reg,
            evaluate=evaluate,
            evaluate_ranking=evaluate_ranking,
        )

    @app.post("/models/{model}/versions", status_code=201, dependencies=write, tags=["models"])
    def register(reg: Reg, model: ModelName, body: RegisterRequest) -> VersionInfo:
        """Gate an artifact folder on the server, then register it as a staging version.

        A rejected candidate is not registered: the answer is 422 with the decision, and the
        rejection is recorded in the ledger.
        """
        outcome = register_candidate(
            settings,
            artifact=Path(body.artifact),
            model=model,
            policy=None,
            training_set=None,
            actor=body.actor,
            reason=body.reason,
            registry=reg,
            evaluate=evaluate,
            evaluate_ranking=evaluate_ranking,
        )
        if outcome.registered is None:
            error = GateRejectedError(
                f"The evaluation gate rejected {body.artifact}: {outcome.decision.summary()}.",
                fix="improve the candidate (or review the gate policy).",
            )
            error.decision = outcome.decision.model_dump(mode="json")  # type: ignore[attr-defined]
            raise error
        return outcome.registered

    def expected(body: TransitionRequest) -> int | object | None:
        if body.expected_production is None:
            return UNSET
        return body.expected_production or None

    @app.post("/models/{model}/versions/{version}/promote", dependencies=write, tags=["models"])
    def promote(
        reg: Reg, model: ModelName, version: VersionNumber, body: TransitionRequest
    ) -> VersionInfo:
        """Promote a version to production; the previous production version is archived."""
        return reg.promote(
            VersionRef(model=model, version=version),
            actor=body.actor,
            reason=body.reason,
            evidence=body.evidence,
            expected_production=expected(body),  # type: ignore[arg-type]
        )

    @app.post("/models/{model}/versions/{version}/archive", dependencies=write, tags=["models"])
    def archive(
        reg: Reg, model: ModelName, version: VersionNumber, body: TransitionRequest
    ) -> VersionInfo:
        """Archive a staging or production version."""
        return reg.archive(
            VersionRef(model=model, version=version),
            actor=body.actor,
            reason=body.reason,
            evidence=body.evidence,
        )

    @app.post("/models/{model}/rollback", dependencies=write, tags=["models"])
    def rollback(reg: Reg, model: ModelName, body: TransitionRequest) -> VersionInfo:
        """Promote the previous production version again."""
        return reg.rollback(
            model,
            actor=body.actor,
            reason=body.reason,
            evidence=body.evidence,
            expected_production=expected(body),  # type: ignore[arg-type]
        )

    return app

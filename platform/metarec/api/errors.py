"""Errors as answers: every deliberate error is ``{error, problem, fix}`` with a 4xx status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from metarec.api.schemas import ErrorBody
from metarec.errors import (
    ApiForbiddenError,
    ApiRequestError,
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

_STATUS: list[tuple[type[MetaRecError], int]] = [
    (AuthError, 401),
    (ApiForbiddenError, 403),
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
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 409, 413, 422, 503)
}


def status_of(error: MetaRecError) -> int:
    """The HTTP status of a deliberate error (400 when no rule names its kind)."""
    if isinstance(error, ApiRequestError):
        return error.status
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 400


def error_response(exc: MetaRecError) -> JSONResponse:
    """The answer of a deliberate error: ``{error, problem, fix}`` with its status."""
    status = status_of(exc)
    detail = getattr(exc, "decision", None)  # the gate decision of a rejection
    body = ErrorBody(error=type(exc).__name__, problem=exc.problem, fix=exc.fix, detail=detail)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _metarec_error(_request: Request, exc: MetaRecError) -> JSONResponse:
    return error_response(exc)


async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # The offending input is not echoed: it may not be JSON-encodable (NaN, bytes).
    errors = [
        {"type": str(e.get("type")), "loc": list(e.get("loc", ())), "msg": str(e.get("msg"))}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


def add_error_handlers(app: FastAPI) -> None:
    """Answer deliberate errors with their status and the invalid requests with 422."""
    app.add_exception_handler(MetaRecError, _metarec_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]

"""The service's JSON endpoints as an ordinary Starlette app, mounted on the BentoML service.

``POST /recommend``, ``/predict`` and ``/feedback`` are plain Starlette routes: each reads the
body, validates it with its request schema in one call (``model_validate_json``, the call
BentoML's JSON decoding makes), awaits the handler and answers the response model's JSON. The
service mounts the app with BentoML's public ``mount_asgi_app`` (``serving.direct_endpoints``,
the default), so every request still passes through BentoML's per-request layers (request
metrics, request timeout and its 504, the service's own ASGI middlewares); its service config
keeps these paths out of the access log and the traces (:func:`skip_logging_and_tracing`),
which cost more CPU per request than the batched adaptation (docs/serving.md).

The answers are the ones BentoML gives for the same endpoints declared with ``@bentoml.api``
(``serving.direct_endpoints: false``): a body that fails its schema gets a 400
``{"error": "N validation error for <schema title>", "detail": [...]}``, an unexpected
exception a 500 with a fixed message, and every answer the service's ``Server`` header.
``tests/integration/test_serving.py`` compares both services' answers byte for byte.

BentoML puts the routes of mounted FastAPI apps (only those) in the service's OpenAPI document;
:func:`document_endpoints` declares the same endpoints on the FastAPI app the service mounts
for ``GET /metadata``, answered by the same handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from metarec.serving.schemas import ErrorBody

Handler = Callable[[Any], Awaitable[BaseModel | Response]]
"""Takes the validated request model; returns the response model or a Starlette response."""
Endpoint = Callable[[Request], Awaitable[Response]]

logger = logging.getLogger(__name__)
UNEXPECTED_ERROR = {"error": "An unexpected error has occurred, please check the server log."}
BENTOML_QUIET_PATHS = ("/metrics", "/healthz", "/livez", "/readyz")
"""BentoML's default ``logging.access.skip_paths``, kept when the service adds its own."""


@dataclass(frozen=True)
class JsonEndpoint:
    """One ``POST`` endpoint with a JSON body.

    Attributes:
        path: ``/recommend``.
        input_model: Validates the body.
        output_model: The 200 answer (for the OpenAPI document).
        handler: Called with the validated body.
        summary: One line for the OpenAPI document.
        needs_token: Whether the request guard requires a bearer token (``/feedback``: 401
            without it, 403 when the service has none; documented, not checked here).
    """

    path: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    handler: Handler
    summary: str
    needs_token: bool = False


def validation_error_body(exc: ValidationError) -> dict[str, Any]:
    """The 400 body of a request body that fails its schema (as BentoML words it)."""
    return {
        "error": f"{exc.error_count()} validation error for {exc.title}",
        "detail": exc.errors(include_context=False, include_input=False),
    }


async def read_body(receive: Receive) -> bytes:
    """The whole request body (Starlette's ``Request.body``, without building a request).

    Raises:
        ClientDisconnect: The client went away (or the guard cut an oversized body off).
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class JsonRoute:
    """The ASGI app of one endpoint's Starlette route: validate, handle, answer JSON.

    Starlette calls a route whose endpoint is an ASGI app (not a function) as it is: no
    ``Request`` object and no per-request exception wrapper, ≈ 7 µs less CPU per request than a
    function endpoint (docs/serving.md). The answers are Starlette responses, the same bytes
    and headers as a function endpoint's.
    """

    def __init__(self, spec: JsonEndpoint, *, server_name: str) -> None:
        """Answer ``spec``.

        Args:
            spec: The endpoint.
            server_name: The BentoML service name, for the ``Server`` header BentoML sends.
        """
        self.spec = spec
        self.headers = {"server": f"BentoML Service/{server_name}"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        response = await self.respond(await read_body(receive))
        await response(scope, receive, send)

    async def respond(self, raw: bytes) -> Response:
        """The answer to a request body: the handler's, a 400 or the fixed 500."""
        try:
            body = self.spec.input_model.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            return JSONResponse(validation_error_body(exc), status_code=400, headers=self.headers)
        try:
            result = await self.spec.handler(body)
        except Exception:
            logger.exception("Unexpected error answering POST %s", self.spec.path)
            return JSONResponse(UNEXPECTED_ERROR, status_code=500, headers=self.headers)
        if isinstance(result, BaseModel):
            return Response(
                result.model_dump_json(), media_type="application/json", headers=self.headers
            )
        result.headers.update(self.headers)
        return result

    def as_function(self) -> Endpoint:
        """The same endpoint as a function of a Starlette request (for a FastAPI route)."""

        async def endpoint(request: Request) -> Response:
            return await self.respond(await request.body())

        endpoint.__doc__ = self.spec.summary
        return endpoint


def json_app(endpoints: Sequence[JsonEndpoint], *, server_name: str) -> Starlette:
    """A Starlette app answering ``POST`` on each endpoint's path.

    Args:
        endpoints: What to answer.
        server_name: The BentoML service name, for the ``Server`` header BentoML sends.

    Returns:
        The app, to mount with ``mount_asgi_app(app, path="/")``.
    """
    routes = [
        Route(e.path, JsonRoute(e, server_name=server_name), methods=["POST"]) for e in endpoints
    ]
    return Starlette(routes=routes)


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``{"$ref": "#/$defs/X"}`` replaced by ``X``'s schema."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline_refs(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {key: _inline_refs(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(value, defs) for value in node]
    return node


def request_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a JSON body validated by ``model`` (self-contained)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    return {
        "required": True,
        "content": {"application/json": {"schema": _inline_refs(schema, defs)}},
    }


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "The body fails its schema (the field is in `detail`), or a support "
        "item's rating does not fit the served version (`{error, field}`, field "
        "`support[i].rating`: a rating version needs one, an event version takes none)."
    },
    **{status: {"model": ErrorBody} for status in (404, 413, 415, 422)},
}
_TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "No, or a wrong, `Authorization: Bearer <serving.feedback_token>`.",
    },
    403: {"model": ErrorBody, "description": "The service has no feedback token: it takes none."},
}


def document_endpoints(
    app: FastAPI, endpoints: Sequence[JsonEndpoint], *, server_name: str
) -> None:
    """Declare ``endpoints`` on a FastAPI app, for the service's OpenAPI document.

    The routes answer exactly as :func:`json_app`'s (the same endpoint functions); the service
    mounts the Starlette app first, so it is the one that answers.

    Args:
        app: The FastAPI app the service mounts.
        endpoints: The endpoints to declare.
        server_name: The BentoML service name (``Server`` header).
    """
    for spec in endpoints:
        app.add_api_route(
            spec.path,
            JsonRoute(spec, server_name=server_name).as_function(),
            methods=["POST"],
            summary=spec.summary,
            response_model=spec.output_model,
            responses={**_ERROR_RESPONSES, **(_TOKEN_RESPONSES if spec.needs_token else {})},
            openapi_extra={"requestBody": request_body_schema(spec.input_model)},
        )


def skip_logging_and_tracing(paths: Sequence[str]) -> dict[str, Any]:
    """BentoML service options that leave ``paths`` out of the access log and the traces.

    Both are BentoML's documented service configuration (``logging.access.skip_paths``,
    ``tracing.excluded_urls``, regular expressions searched in the request URL).

    Args:
        paths: Exact request paths, e.g. ``["/recommend"]``.

    Returns:
        Keyword arguments for ``@bentoml.service``.
    """
    return {
        "logging": {"access": {"skip_paths": [*BENTOML_QUIET_PATHS, *paths]}},
        "tracing": {"excluded_urls": [f"{path}$" for path in paths]},
    }

"""The service's JSON endpoints answered in its own ASGI layer, without BentoML's per-request layer.

BentoML's handling of one ``@bentoml.api`` call (the request-context middleware, routing,
``Request`` objects, its IO-descriptor machinery and a streamed response) costs about as much
CPU as the whole micro-batched adaptation of that request (measured in docs/serving.md). For
``POST /recommend``, ``/predict`` and ``/feedback`` this middleware answers directly, with the
same contract:

* the body is validated by the endpoint's BentoML input model (the one BentoML itself would use,
  ``AdaptationService.apis[name].input_spec``) with the same call, so a bad body gets
  BentoML's 400 answer (``{"error": "N validation error for …", "detail": [...]}``) byte for
  byte;
* the handler is the same function the ``@bentoml.api`` method calls;
* the answer is the output model's JSON, as BentoML serialises it, with BentoML's ``Server``
  header;
* an unexpected exception is logged and answered with BentoML's generic 500 body;
* a request that takes longer than the service's traffic timeout is answered with BentoML's
  504 body.

:class:`~metarec.serving.http.RequestGuard` (body limit, content type, metarec request metrics,
which the canary analysis reads) sits in front of it. Both run in front of BentoML's own
per-request layers (:mod:`metarec.serving.front`), so requests answered here are not in
BentoML's access log, tracing spans or ``bentoml_service_request_*`` metrics. Other paths and
methods, and every request that arrives before the service instance has bound its handlers, go
to BentoML as before. ``serving.direct_endpoints: false`` turns it off (BentoML then answers the
same endpoints, with all its layers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse

Handler = Callable[[BaseModel], Awaitable[Any]]
"""Takes the validated input model; returns a pydantic model or a Starlette ``Response``."""

logger = logging.getLogger(__name__)
UNEXPECTED_ERROR = {"error": "An unexpected error has occurred, please check the server log."}


def timeout_body(seconds: float) -> dict[str, str]:
    """BentoML's 504 body for a request that took longer than the traffic timeout."""
    return {"error": f"Not able to process the request in {seconds} seconds"}


@dataclass(frozen=True)
class DirectRoute:
    """One endpoint answered directly.

    Attributes:
        input_model: The pydantic model that validates the JSON body.
        handler: Called with the validated model.
    """

    input_model: type[BaseModel]
    handler: Handler


class DirectRoutes:
    """The routes the middleware answers; empty until the service instance binds them."""

    def __init__(self) -> None:
        """No routes: every request passes through to BentoML."""
        self.routes: dict[str, DirectRoute] = {}
        self.server_header = b""

    def bind(self, routes: dict[str, DirectRoute], *, server_name: str) -> None:
        """Answer ``routes`` (path → route) directly from now on.

        Args:
            routes: ``{"/recommend": DirectRoute(...), ...}``.
            server_name: The BentoML service name, for the ``Server`` header BentoML sends.
        """
        self.routes = dict(routes)
        self.server_header = f"BentoML Service/{server_name}".encode()


def validation_error_body(exc: ValidationError) -> dict[str, Any]:
    """BentoML's 400 body for a body that fails its input model."""
    return {
        "error": f"{exc.error_count()} validation error for {exc.title}",
        "detail": exc.errors(include_context=False, include_input=False),
    }


class DirectEndpoints:
    """ASGI middleware: ``POST`` to a bound route is validated, handled and answered here."""

    def __init__(self, app: Any, *, routes: DirectRoutes, timeout_s: float) -> None:
        """Wrap ``app``.

        Args:
            app: The BentoML ASGI app (answers everything not handled here).
            routes: The bound routes (read on every request).
            timeout_s: Longest a request may take, body included (then a 504).
        """
        self.app = app
        self.routes = routes
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point."""
        route = None
        if scope["type"] == "http" and scope.get("method") == "POST":
            route = self.routes.routes.get(scope.get("path", ""))
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await _read_body(receive)
                if body is None:  # the client went away (or the guard cut an oversized body off)
                    return
                status, payload = await self._answer(route, body)
        except TimeoutError:
            status, payload = 504, JSONResponse(timeout_body(self.timeout_s)).body
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"server", self.routes.server_header),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, route: DirectRoute, body: bytes) -> tuple[int, bytes]:
        try:
            request = route.input_model.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return 400, JSONResponse(validation_error_body(exc)).body
        try:
            result = await route.handler(request)
        except Exception:
            logger.exception("Unexpected error in %s", type(request).__name__)
            return 500, JSONResponse(UNEXPECTED_ERROR).body
        if isinstance(result, BaseModel):
            return 200, result.model_dump_json().encode()
        return int(result.status_code), bytes(result.body)  # a Starlette JSONResponse


async def _read_body(receive: Any) -> bytes | None:
    """The whole request body, or None when the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)

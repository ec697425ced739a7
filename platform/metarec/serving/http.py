"""ASGI middleware in front of the service's endpoints: feedback auth, body limit, metrics.

BentoML validates request bodies before an endpoint runs (a 400 naming the field), so request
counting happens here, where every answer — 2xx, the 400s of validation, the 4xx of the engine,
the 401/403 of feedback without its token, 413s of this guard — passes. The counted metrics
come from a :class:`MetricsSink` that the service instance binds once its model version is
known.

A client that goes away before its answer is sent (the service sees ``http.disconnect`` while
it reads the body or before it answers) is counted as :data:`CLIENT_CLOSED` (499, class
``4xx``): it is not a fault of the service, and ``metarec_requests_total{status="5xx"}`` feeds
the canary's error rate.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import SecretStr
from starlette.requests import ClientDisconnect

from metarec.serving.feedback_auth import FeedbackGate, is_feedback_path, mark_caller, unmark
from metarec.serving.metrics import ServingMetrics

ENDPOINTS = {"/recommend": "recommend", "/predict": "predict", "/feedback": "feedback"}
ENDPOINTS["/metadata"] = "metadata"

POST_ENDPOINTS = {"recommend", "predict", "feedback"}
JSON_TYPES = {b"application/json", b""}
Scope = dict[str, Any]
# The status a request is counted under when its client closed the connection before the
# answer was sent (nginx's "client closed request").
CLIENT_CLOSED = 499


def _unsupported(media: bytes) -> dict[str, Any]:
    shown = media.decode("latin-1")[:100]
    return {
        "error": f"content-type: {shown!r} is not supported. Fix: send the body as JSON with "
        "content-type application/json.",
        "field": "content-type",
    }


class MetricsSink:
    """Where the guard reports requests: the metrics of the bound service instance."""

    def __init__(self) -> None:
        """Unbound until the service has loaded its model."""
        self.metrics: ServingMetrics | None = None

    def bind(self, metrics: ServingMetrics) -> None:
        """Report to ``metrics`` from now on."""
        self.metrics = metrics

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one request (dropped while unbound: the service is not ready then)."""
        if self.metrics is not None:
            self.metrics.observe_request(endpoint, status, seconds)


async def _send_json(
    send: Any, status: int, body: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class _Exchange:
    """One request as the guard sees it: what the app answered and what the client did."""

    def __init__(self, guard: RequestGuard, receive: Any, send: Any) -> None:
        self.guard = guard
        self._receive = receive
        self._send = send
        self.status = 500  # until the app answers: an app that raises answered nothing
        self.received = 0
        self.too_large = False
        self.replaced = False
        self.answered = False  # the last body message was sent
        self.client_gone = False  # the client disconnected before the answer was sent

    @property
    def counted_status(self) -> int:
        """The status the request is counted under."""
        return CLIENT_CLOSED if self.client_gone else self.status

    async def send(self, message: dict[str, Any]) -> None:
        """The app's ``send``: a 413 replaces the answer of a body that was cut off."""
        if self.too_large:
            if not self.replaced:
                self.replaced = True
                self.status = 413
                await _send_json(self._send, 413, self.guard.too_large())
            return
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.answered = True
        await self._send(message)

    async def receive(self) -> dict[str, Any]:
        """The app's ``receive``: counts the body; notes a client that went away."""
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.answered:
            self.client_gone = True
        elif message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.guard.max_body_bytes:
                self.too_large = True
                return {"type": "http.disconnect"}
        return message

    def hides(self, exc: Exception) -> bool:
        """Whether the app's exception is this guard's doing or the client's, not a fault."""
        return self.too_large or (self.client_gone and isinstance(exc, ClientDisconnect))


class RequestGuard:
    """Guard the service's endpoints; time and count them.

    Refuses feedback without its token (401/403), bodies over ``max_body_bytes`` (413) and
    non-JSON bodies (415), and marks each request as from a trusted caller or not.
    """

    def __init__(
        self,
        app: Any,
        *,
        max_body_bytes: int,
        sink: MetricsSink,
        feedback_token: SecretStr | str | None = None,
    ) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            max_body_bytes: Largest accepted request body.
            sink: Where request metrics go.
            feedback_token: The bearer token ``/feedback`` requires (None: feedback refused).
        """
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.sink = sink
        self.feedback = FeedbackGate(feedback_token)

    def too_large(self) -> dict[str, Any]:
        """The 413 body."""
        return {
            "error": f"body: the request body exceeds {self.max_body_bytes} bytes. Fix: send "
            "a smaller body (fewer candidates or events), or raise serving.max_body_bytes.",
            "field": "body",
        }

    async def _refuse(
        self, scope: Scope, send: Any, endpoint: str | None, headers: dict[bytes, bytes]
    ) -> int | None:
        """Answer a request refused before the app sees it; its status (None: not refused)."""
        if is_feedback_path(scope.get("path", "")):
            refusal = self.feedback.refusal(headers.get(b"authorization"))
            if refusal is not None:
                await _send_json(send, refusal.status, refusal.body, refusal.headers)
                return refusal.status
        media = headers.get(b"content-type", b"application/json").split(b";")[0].strip()
        if endpoint in POST_ENDPOINTS and media.lower() not in JSON_TYPES:
            # BentoML would try its multipart or pickle decoders (a 500 on a JSON body).
            await _send_json(send, 415, _unsupported(media))
            return 415
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _send_json(send, 413, self.too_large())
            return 413
        return None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = ENDPOINTS.get(scope.get("path", ""))
        start = time.perf_counter()
        exchange = _Exchange(self, receive, send)
        headers = dict(scope.get("headers") or [])
        try:
            refused = await self._refuse(scope, send, endpoint, headers)
            if refused is not None:
                exchange.status = refused
                return
            mark = mark_caller(self.feedback.trusts(headers.get(b"authorization")))
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except Exception as exc:
                if not exchange.hides(exc):
                    raise  # not ours to hide
            finally:
                unmark(mark)
            if exchange.too_large and not exchange.replaced:
                await exchange.send({"type": "http.response.start", "status": 413})
        finally:
            if endpoint is not None:
                seconds = time.perf_counter() - start
                self.sink.observe(endpoint, exchange.counted_status, seconds)

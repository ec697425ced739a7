"""ASGI middleware in front of the service's endpoints: body size limit and request metrics.

BentoML validates request bodies before an endpoint runs (a 400 naming the field), so request
counting happens here, where every answer — 2xx, the 400s of validation, the 4xx of the engine,
413s of this guard — passes. The counted metrics come from a :class:`MetricsSink` that the
service instance binds once its model version is known.
"""

from __future__ import annotations

import json
import time
from typing import Any

from metarec.serving.metrics import ServingMetrics

ENDPOINTS = {"/recommend": "recommend", "/predict": "predict", "/feedback": "feedback"}
ENDPOINTS["/metadata"] = "metadata"

POST_ENDPOINTS = {"recommend", "predict", "feedback"}
JSON_TYPES = {b"application/json", b""}
Scope = dict[str, Any]


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


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestGuard:
    """Refuse bodies over ``max_body_bytes`` (413) and time/count the service's endpoints."""

    def __init__(self, app: Any, *, max_body_bytes: int, sink: MetricsSink) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            max_body_bytes: Largest accepted request body.
            sink: Where request metrics go.
        """
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.sink = sink

    def _too_large(self) -> dict[str, Any]:
        return {
            "error": f"body: the request body exceeds {self.max_body_bytes} bytes. Fix: send "
            "a smaller body (fewer candidates or events), or raise serving.max_body_bytes.",
            "field": "body",
        }

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = ENDPOINTS.get(scope.get("path", ""))
        start = time.perf_counter()
        state = {"status": 500, "received": 0, "too_large": False, "replaced": False}

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["too_large"]:
                # The body was cut off: whatever the app answers, the answer is a 413.
                if not state["replaced"]:
                    state["replaced"] = True
                    state["status"] = 413
                    await _send_json(send, 413, self._too_large())
                return
            if message["type"] == "http.response.start":
                state["status"] = int(message["status"])
            await send(message)

        async def limited_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body_bytes:
                    state["too_large"] = True
                    return {"type": "http.disconnect"}
            return message

        try:
            headers = dict(scope.get("headers") or [])
            media = headers.get(b"content-type", b"application/json").split(b";")[0].strip()
            if endpoint in POST_ENDPOINTS and media.lower() not in JSON_TYPES:
                # BentoML would try its multipart or pickle decoders (a 500 on a JSON body).
                state["status"] = 415
                await _send_json(send, 415, _unsupported(media))
                return
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                state["status"] = 413
                await _send_json(send, 413, self._too_large())
                return
            try:
                await self.app(scope, limited_receive, guarded_send)
            except Exception:
                if not state["too_large"]:
                    raise  # not ours to hide
            if state["too_large"] and not state["replaced"]:
                await guarded_send({"type": "http.response.start", "status": 413})
        finally:
            if endpoint is not None:
                self.sink.observe(endpoint, int(state["status"]), time.perf_counter() - start)

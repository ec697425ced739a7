"""A client that goes away before its answer is counted as 499 (class 4xx), never as a 5xx."""

import asyncio
import itertools
from typing import Any

import pytest
from metarec.serving.endpoints import JsonEndpoint, json_app
from metarec.serving.http import CLIENT_CLOSED, MetricsSink, RequestGuard
from metarec.serving.metrics import ServingMetrics
from metarec.serving.schemas import PredictRequest, PredictResponse

# A version tag per guard: under prometheus_client's multiprocess mode (set once BentoML is
# imported in the process) equal label sets of two registries would share one value.
VERSIONS = itertools.count(1)


class Sink(MetricsSink):
    """Keeps what the guard reported."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.seen.append((endpoint, status))
        super().observe(endpoint, status, seconds)


async def _handler(body: Any) -> PredictResponse:
    return PredictResponse(model_version="m:v1", predictions=[])


PREDICT = JsonEndpoint("/predict", PredictRequest, PredictResponse, _handler, "Predict.")


def _scope(path: str = "/predict") -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


async def _call(app: Any, messages: list[dict[str, Any]]) -> tuple[list[dict], Sink]:
    """Run ``app`` behind the guard; ``messages`` are what the client sends, then it is gone."""
    sink = Sink()
    sink.bind(ServingMetrics(model_version=f"hangup:v{next(VERSIONS)}"))
    guard = RequestGuard(app, max_body_bytes=10_000, sink=sink)
    pending = list(messages)
    sent: list[dict] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await guard(_scope(), receive, send)
    return sent, sink


PARTIAL = {"type": "http.request", "body": b'{"user_id": 1, ', "more_body": True}
GONE = {"type": "http.disconnect"}


def test_a_disconnect_while_the_body_is_read_is_a_499_on_the_direct_path():
    app = json_app([PREDICT], server_name="t")
    _, sink = asyncio.run(_call(app, [PARTIAL, GONE]))
    assert sink.seen == [("predict", CLIENT_CLOSED)]
    (family,) = sink.metrics.requests.collect()
    by_class = {
        s.labels["status"]: s.value
        for s in family.samples
        if s.name.endswith("_total") and s.labels["endpoint"] == "predict"
    }
    assert by_class == {"2xx": 0.0, "4xx": 1.0, "5xx": 0.0}


def test_an_app_that_returns_or_answers_500_after_the_disconnect_is_a_499():
    async def silent(scope, receive, send):
        await receive()
        await receive()  # the disconnect: returns without answering

    async def late_500(scope, receive, send):
        while (await receive())["type"] != "http.disconnect":
            pass
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    for app in (silent, late_500):
        _, sink = asyncio.run(_call(app, [PARTIAL, GONE]))
        assert sink.seen == [("predict", CLIENT_CLOSED)], app.__name__


def test_an_answer_sent_before_the_client_left_keeps_its_status():
    async def answers_then_listens(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        await receive()  # the disconnect after the answer (e.g. a streaming response's listener)

    body = {"type": "http.request", "body": b"{}", "more_body": False}
    _, sink = asyncio.run(_call(answers_then_listens, [body, GONE]))
    assert sink.seen == [("predict", 200)]


def test_a_failure_of_the_service_is_still_a_5xx_and_raised():
    async def broken(scope, receive, send):
        await receive()
        raise RuntimeError("a bug")

    body = {"type": "http.request", "body": b"{}", "more_body": False}
    sink = Sink()
    sink.bind(ServingMetrics(model_version=f"hangup:v{next(VERSIONS)}"))
    guard = RequestGuard(broken, max_body_bytes=10_000, sink=sink)

    async def receive():
        return body

    async def send(message):
        pass

    with pytest.raises(RuntimeError):
        asyncio.run(guard(_scope(), receive, send))
    assert sink.seen == [("predict", 500)]

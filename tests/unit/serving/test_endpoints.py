"""The JSON endpoints: a Starlette app mounted on a BentoML service, behind BentoML's layers.

Each test builds a BentoML service the way the adaptation service is built (the endpoints app
and a fallback app mounted with ``mount_asgi_app``, the request guard as its ASGI middleware,
the access log and tracing skipped for the endpoint) and calls its ASGI app in process.
"""

import asyncio
import functools
import itertools
import logging
from typing import Any

import bentoml
import httpx
import pytest
from fastapi import FastAPI
from metarec.serving.endpoints import (
    JsonEndpoint,
    JsonRoute,
    json_app,
    read_body,
    skip_logging_and_tracing,
)
from metarec.serving.http import MetricsSink, RequestGuard
from metarec.serving.metrics import ServingMetrics
from metarec.serving.schemas import RecommendRequest, RecommendResponse, ScoredItem
from opentelemetry.util.http import ExcludeList
from prometheus_client import generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

# A model version per client: under prometheus_client's multiprocess mode (set by BentoML once
# imported in this process) equal label sets share one value across registries.
VERSIONS = (f"direct:v{n}" for n in itertools.count(1))
SERVICES = (f"metarec_endpoints_{n}" for n in itertools.count(1))
ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])


async def top_items(request: RecommendRequest) -> RecommendResponse | JSONResponse:
    if request.user_id == 404:
        return JSONResponse({"error": "unknown user", "field": "user_id"}, status_code=404)
    if request.user_id == 500:
        raise RuntimeError("boom")
    if request.user_id == 504:
        await asyncio.sleep(5)
    items = [
        ScoredItem(item_id=i, score=5.0 - i / 10, predicted_rating=5.0 - i / 10)
        for i in range(1, request.k + 1)
    ]
    return RecommendResponse(model_version=f"m:v{request.user_id}", items=items)


def fallback_app() -> FastAPI:
    """Another mounted app: answers what the endpoints app does not (GET /recommend, /other)."""
    app = FastAPI()

    @app.get("/recommend")
    @app.get("/other")
    async def fallback(request: Request) -> dict[str, str]:
        return {"answered_by": "fallback", "method": request.method}

    return app


MAX_BODY = 100
SINK = MetricsSink()


@functools.cache
def host(*, timeout_s: float) -> Any:
    """The ASGI app of a BentoML service with the endpoints app mounted, built once.

    BentoML registers its request metrics in one process-wide registry per app it builds, so
    only the first host keeps them; the short-timeout host switches them off.
    """
    config: dict[str, Any] = {"traffic": {"timeout": timeout_s}}
    if timeout_s < 1:
        config["metrics"] = {"enabled": False}

    @bentoml.service(name=next(SERVICES), **config, **skip_logging_and_tracing(["/recommend"]))
    class Host:
        pass

    endpoint = JsonEndpoint("/recommend", RecommendRequest, RecommendResponse, top_items, "Top.")
    Host.mount_asgi_app(json_app([endpoint], server_name="svc"), path="/")
    Host.mount_asgi_app(fallback_app(), path="/")
    Host.add_asgi_middleware(RequestGuard, max_body_bytes=MAX_BODY, sink=SINK)
    return Host.to_asgi(is_main=True)


def app(*, timeout_s: float = 30.0) -> tuple[httpx.AsyncClient, ServingMetrics]:
    """An in-process client of the host, counting into fresh metrics."""
    metrics = ServingMetrics(model_version=next(VERSIONS))
    SINK.bind(metrics)
    transport = httpx.ASGITransport(app=host(timeout_s=timeout_s))
    return httpx.AsyncClient(transport=transport, base_url="http://t"), metrics


@pytest.mark.anyio
@ASYNCIO
async def test_bentomls_own_routes_still_answer(anyio_backend):
    http, _ = app()
    async with http:
        live = await http.get("/livez")
        wrong_method = await http.get("/recommend")
    assert live.status_code == 200
    assert wrong_method.json() == {"answered_by": "fallback", "method": "GET"}


@pytest.mark.anyio
@ASYNCIO
async def test_a_bound_route_answers_with_the_output_models_json(anyio_backend):
    http, metrics = app()
    async with http:
        response = await http.post("/recommend", json={"user_id": 7, "k": 3})
        other_method = await http.get("/recommend")
    assert response.status_code == 200
    assert response.headers["server"] == "BentoML Service/svc"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["model_version"] == "m:v7"
    assert [item["item_id"] for item in body["items"]] == [1, 2, 3]
    assert other_method.json()["answered_by"] == "fallback"
    text = generate_latest(metrics.registry).decode()
    assert (
        f'endpoint="recommend",model_version="{metrics.model_version}",status="2xx"}} 2.0' in text
    )


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"user_id": true}', ["user_id"]),
        (b'{"support": [{"item_id": 1, "rating": 9}]}', ["support", 0, "rating"]),
        (b'{"user_id": 1, "colour": "red"}', ["colour"]),
        (b'{"user_id": 1,', []),
    ],
)
@pytest.mark.anyio
@ASYNCIO
async def test_invalid_bodies_get_the_validation_400(anyio_backend, body, loc):
    http, metrics = app()
    async with http:
        response = await http.post(
            "/recommend", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "1 validation error for RecommendRequest"
    assert answer["detail"][0]["loc"][: len(loc)] == loc
    assert "input" not in answer["detail"][0]
    text = generate_latest(metrics.registry).decode()
    assert (
        f'endpoint="recommend",model_version="{metrics.model_version}",status="4xx"}} 1.0' in text
    )


@pytest.mark.anyio
@ASYNCIO
async def test_an_empty_body_is_validated_as_an_empty_object(anyio_backend):
    http, _ = app()
    async with http:
        response = await http.post("/recommend", content=b"")
    # {} is a valid RecommendRequest (every field has a default): the handler ran.
    assert response.status_code == 200
    assert response.json()["model_version"] == "m:vNone"


@pytest.mark.anyio
@ASYNCIO
async def test_handler_responses_and_errors(anyio_backend):
    http, metrics = app()
    async with http:
        refused = await http.post("/recommend", json={"user_id": 404})
        failed = await http.post("/recommend", json={"user_id": 500})
    assert refused.status_code == 404
    assert refused.json() == {"error": "unknown user", "field": "user_id"}
    assert refused.headers["server"] == "BentoML Service/svc"
    assert failed.status_code == 500
    assert "unexpected error" in failed.json()["error"]
    text = generate_latest(metrics.registry).decode()
    assert f'model_version="{metrics.model_version}",status="5xx"}} 1.0' in text


@pytest.mark.anyio
@ASYNCIO
async def test_the_guard_still_refuses_oversized_bodies(anyio_backend):
    http, _ = app()  # the host refuses bodies over MAX_BODY bytes

    async def chunks():
        for _ in range(5):
            yield b" " * 40

    async with http:
        streamed = await http.post(
            "/recommend", content=chunks(), headers={"content-type": "application/json"}
        )
    assert streamed.status_code == 413
    assert streamed.json()["field"] == "body"


@pytest.mark.anyio
@ASYNCIO
async def test_a_request_over_the_timeout_gets_bentomls_504(anyio_backend):
    http, metrics = app(timeout_s=0.2)
    async with http:
        slow = await http.post("/recommend", json={"user_id": 504})
        quick = await http.post("/recommend", json={"user_id": 1})
    assert slow.status_code == 504
    assert slow.json() == {"error": "Not able to process the request in 0.2 seconds"}
    assert quick.status_code == 200  # the timer of the slow request is gone with it
    text = generate_latest(metrics.registry).decode()
    assert f'model_version="{metrics.model_version}",status="5xx"}} 1.0' in text


@pytest.mark.anyio
@ASYNCIO
async def test_the_endpoints_are_left_out_of_bentomls_access_log(anyio_backend, caplog):
    http, _ = app()
    with caplog.at_level(logging.INFO, logger="bentoml.access"):
        async with http:
            assert (await http.post("/recommend", json={"user_id": 1})).status_code == 200
            assert (await http.get("/other")).status_code == 200
    logged = [r.getMessage() for r in caplog.records if r.name == "bentoml.access"]
    assert len(logged) == 1
    assert "path=/other" in logged[0]


def test_tracing_skips_exactly_the_endpoint_paths():
    excluded = ExcludeList(skip_logging_and_tracing(["/recommend"])["tracing"]["excluded_urls"])
    assert excluded.url_disabled("http://127.0.0.1:3000/recommend")
    assert not excluded.url_disabled("http://127.0.0.1:3000/recommendations")
    assert not excluded.url_disabled("http://127.0.0.1:3000/metadata")


def test_the_endpoints_are_asgi_routes_without_a_request_object():
    endpoint = JsonEndpoint("/recommend", RecommendRequest, RecommendResponse, top_items, "Top.")
    (route,) = json_app([endpoint], server_name="svc").routes
    assert isinstance(route.app, JsonRoute)  # called as it is: no request_response wrapper
    assert route.methods == {"POST"}


def receiving(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


@pytest.mark.anyio
@ASYNCIO
async def test_read_body_joins_the_chunks_and_fails_on_a_disconnect(anyio_backend):
    chunks = receiving(
        {"type": "http.request", "body": b'{"user_id"', "more_body": True},
        {"type": "http.request", "body": b": 1}", "more_body": False},
    )
    assert await read_body(chunks) == b'{"user_id": 1}'
    assert await read_body(receiving({"type": "http.request"})) == b""
    gone = receiving(
        {"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}
    )
    with pytest.raises(ClientDisconnect):
        await read_body(gone)

"""The direct JSON endpoints: validated, handled and answered in the service's ASGI layer."""

import asyncio
import itertools

import httpx
import pytest
from metarec.serving.direct import DirectEndpoints, DirectRoute, DirectRoutes
from metarec.serving.http import MetricsSink, RequestGuard
from metarec.serving.metrics import ServingMetrics
from metarec.serving.schemas import RecommendRequest, RecommendResponse, ScoredItem
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]
# A model version per client: under prometheus_client's multiprocess mode (set by BentoML once
# imported in this process) equal label sets share one value across registries.
VERSIONS = (f"direct:v{n}" for n in itertools.count(1))


async def fallback(request: Request) -> JSONResponse:
    """Stands in for BentoML: says that it answered."""
    return JSONResponse({"answered_by": "fallback", "method": request.method})


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


def app(routes: DirectRoutes, *, max_body_bytes: int = 10_000, timeout_s: float = 30.0):
    inner = Starlette(routes=[Route("/recommend", fallback, methods=["GET", "POST"])])
    sink = MetricsSink()
    metrics = ServingMetrics(model_version=next(VERSIONS))
    sink.bind(metrics)
    guarded = RequestGuard(
        DirectEndpoints(inner, routes=routes, timeout_s=timeout_s),
        max_body_bytes=max_body_bytes,
        sink=sink,
    )
    transport = httpx.ASGITransport(app=guarded)
    return httpx.AsyncClient(transport=transport, base_url="http://t"), metrics


def bound() -> DirectRoutes:
    routes = DirectRoutes()
    routes.bind({"/recommend": DirectRoute(RecommendRequest, top_items)}, server_name="svc")
    return routes


async def test_unbound_routes_pass_everything_through(anyio_backend):
    http, _ = app(DirectRoutes())
    async with http:
        response = await http.post("/recommend", json={"user_id": 1})
    assert response.json() == {"answered_by": "fallback", "method": "POST"}


async def test_a_bound_route_answers_with_the_output_models_json(anyio_backend):
    http, metrics = app(bound())
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
        (b'{"user_id": "7"}', ["user_id"]),
        (b'{"support": [{"item_id": 1, "rating": 9}]}', ["support", 0, "rating"]),
        (b'{"user_id": 1, "colour": "red"}', ["colour"]),
        (b'{"user_id": 1,', []),
    ],
)
async def test_invalid_bodies_get_the_validation_400(anyio_backend, body, loc):
    http, metrics = app(bound())
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


async def test_an_empty_body_is_validated_as_an_empty_object(anyio_backend):
    http, _ = app(bound())
    async with http:
        response = await http.post("/recommend", content=b"")
    # {} is a valid RecommendRequest (every field has a default): the handler ran.
    assert response.status_code == 200
    assert response.json()["model_version"] == "m:vNone"


async def test_handler_responses_and_errors(anyio_backend):
    http, metrics = app(bound())
    async with http:
        refused = await http.post("/recommend", json={"user_id": 404})
        failed = await http.post("/recommend", json={"user_id": 500})
    assert refused.status_code == 404
    assert refused.json() == {"error": "unknown user", "field": "user_id"}
    assert failed.status_code == 500
    assert "unexpected error" in failed.json()["error"]
    text = generate_latest(metrics.registry).decode()
    assert f'model_version="{metrics.model_version}",status="5xx"}} 1.0' in text


async def test_the_guard_still_refuses_oversized_bodies(anyio_backend):
    http, _ = app(bound(), max_body_bytes=100)

    async def chunks():
        for _ in range(5):
            yield b" " * 40

    async with http:
        streamed = await http.post(
            "/recommend", content=chunks(), headers={"content-type": "application/json"}
        )
    assert streamed.status_code == 413
    assert streamed.json()["field"] == "body"


async def test_a_request_over_the_timeout_gets_bentomls_504(anyio_backend):
    http, metrics = app(bound(), timeout_s=0.2)
    async with http:
        slow = await http.post("/recommend", json={"user_id": 504})
        quick = await http.post("/recommend", json={"user_id": 1})
    assert slow.status_code == 504
    assert slow.json() == {"error": "Not able to process the request in 0.2 seconds"}
    assert quick.status_code == 200  # the timer of the slow request is gone with it
    text = generate_latest(metrics.registry).decode()
    assert f'model_version="{metrics.model_version}",status="5xx"}} 1.0' in text

import httpx
import pytest
from metarec.serving.http import MetricsSink, RequestGuard
from metarec.serving.metrics import ServingMetrics
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


def client(limit: int = 100) -> tuple[httpx.AsyncClient, ServingMetrics]:
    sink = MetricsSink()
    metrics = ServingMetrics(model_version="m:v1")
    sink.bind(metrics)
    app = RequestGuard(
        Starlette(routes=[Route("/predict", echo, methods=["POST"])]),
        max_body_bytes=limit,
        sink=sink,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t"), metrics


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_small_bodies_pass_and_large_ones_are_413(anyio_backend):
    http, metrics = client()
    async with http:
        assert (await http.post("/predict", content=b"x" * 10)).json() == {"bytes": 10}
        declared = await http.post("/predict", content=b"x" * 101)
        assert declared.status_code == 413
        assert declared.json()["field"] == "body"

        async def chunks():
            for _ in range(5):
                yield b"x" * 40

        streamed = await http.post("/predict", content=chunks())
        assert streamed.status_code == 413
    text = generate_latest(metrics.registry).decode()
    assert 'endpoint="predict",model_version="m:v1",status="2xx"} 1.0' in text
    assert 'endpoint="predict",model_version="m:v1",status="4xx"} 2.0' in text


def test_an_unbound_sink_drops_observations():
    MetricsSink().observe("recommend", 200, 0.1)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_non_json_bodies_are_415(anyio_backend):
    http, _ = client()
    async with http:
        for media in ("multipart/form-data; boundary=x", "application/vnd.bentoml+pickle"):
            response = await http.post("/predict", content=b"{}", headers={"content-type": media})
            assert response.status_code == 415
            assert response.json()["field"] == "content-type"
        ok = await http.post(
            "/predict", content=b"{}", headers={"content-type": "application/json; charset=utf-8"}
        )
        assert ok.status_code == 200

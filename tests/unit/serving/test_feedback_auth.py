"""Feedback needs the feedback token; only a trusted caller's answers are remembered."""

import itertools

import httpx
import pytest
from metarec.config import ServingSettings
from metarec.serving.feedback_auth import FeedbackGate, caller_is_trusted
from metarec.serving.http import MetricsSink, RequestGuard
from metarec.serving.metrics import ServingMetrics
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN = "s3cret-feedback-token-0123456789"
EVENTS = {"events": [{"user_id": 1, "item_id": 2, "rating": 5.0}]}
# A version tag per guard: under prometheus_client's multiprocess mode (set once BentoML is
# imported in the process) equal label sets of two registries would share one value.
VERSIONS = itertools.count(1)


def on_asyncio(test):
    """Run an async test on asyncio (the service's loop)."""
    return pytest.mark.anyio(pytest.mark.parametrize("anyio_backend", ["asyncio"])(test))


def client(token: str | None = TOKEN, limit: int = 1000):
    """A guarded app whose endpoints answer who called them (and count what they saw)."""
    seen: list[str] = []

    async def answer(request: Request) -> JSONResponse:
        seen.append(request.url.path)
        await request.body()
        return JSONResponse({"trusted": caller_is_trusted()})

    routes = [Route(p, answer, methods=["POST"]) for p in ("/feedback", "/recommend")]
    sink = MetricsSink()
    metrics = ServingMetrics(model_version=f"auth:v{next(VERSIONS)}")
    sink.bind(metrics)
    app = RequestGuard(
        Starlette(routes=routes), max_body_bytes=limit, sink=sink, feedback_token=token
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return http, metrics, seen


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@on_asyncio
async def test_feedback_without_the_token_never_reaches_the_service(anyio_backend):
    http, metrics, seen = client()
    async with http:
        for headers in (
            {},
            bearer("wrong"),
            bearer(TOKEN[:-1]),
            {"authorization": f"Basic {TOKEN}"},
            {"authorization": TOKEN},
        ):
            refused = await http.post("/feedback", json=EVENTS, headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["field"] == "authorization"
            assert "Authorization: Bearer" in refused.json()["error"]
            assert refused.headers["www-authenticate"].startswith("Bearer")
        assert seen == []  # the engine never scored any of them
        accepted = await http.post("/feedback", json=EVENTS, headers=bearer(TOKEN))
        assert accepted.status_code == 200 and accepted.json() == {"trusted": True}
        lower = await http.post(
            "/feedback", json=EVENTS, headers={"authorization": f"bearer {TOKEN}"}
        )
        assert lower.status_code == 200
    text = generate_latest(metrics.registry).decode()
    version = metrics.model_version
    assert f'endpoint="feedback",model_version="{version}",status="4xx"}} 5.0' in text
    assert f'endpoint="feedback",model_version="{version}",status="2xx"}} 2.0' in text


@on_asyncio
async def test_a_service_without_a_token_refuses_all_feedback_naming_the_fix(anyio_backend):
    for token in (None, ""):
        http, _, seen = client(token=token)
        async with http:
            for headers in ({}, bearer(""), bearer("anything")):
                refused = await http.post("/feedback", json=EVENTS, headers=headers)
                assert refused.status_code == 403
                assert "METAREC_SERVING__FEEDBACK_TOKEN" in refused.json()["error"]
                assert "Fix:" in refused.json()["error"]
            assert (await http.post("/recommend", json={})).status_code == 200
        assert seen == ["/recommend"]


@on_asyncio
async def test_the_token_is_checked_before_the_body_or_its_type(anyio_backend):
    http, _, seen = client(limit=1024)
    async with http:
        big = await http.post("/feedback", content=b"x" * 5000)
        assert big.status_code == 401
        typed = await http.post(
            "/feedback", content=b"{}", headers={"content-type": "application/x-pickle"}
        )
        assert typed.status_code == 401
        slash = await http.post("/feedback/", json=EVENTS)
        assert slash.status_code == 401
    assert seen == []


@on_asyncio
async def test_only_requests_carrying_the_token_are_trusted(anyio_backend):
    http, _, _ = client()
    async with http:
        plain = await http.post("/recommend", json={})
        wrong = await http.post("/recommend", json={}, headers=bearer("guess"))
        trusted = await http.post("/recommend", json={}, headers=bearer(TOKEN))
    assert plain.json() == {"trusted": False}
    assert wrong.json() == {"trusted": False}
    assert trusted.json() == {"trusted": True}
    assert caller_is_trusted() is False  # reset once the request is answered


def test_an_empty_token_setting_takes_no_feedback():
    for empty in (ServingSettings(feedback_token=""), ServingSettings()):
        assert not FeedbackGate(empty.feedback_token).enabled
    configured = ServingSettings(feedback_token=TOKEN).feedback_token
    assert configured is not None and TOKEN not in repr(configured)  # a secret, never shown
    assert FeedbackGate(configured).enabled

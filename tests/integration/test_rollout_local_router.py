"""LocalWeightedRouter under real HTTP traffic: sticky per user, weight changes under load lose
nothing, the admin endpoint, its own metrics, a graceful stop (the admin API's token and the
request framing: ``test_local_router_admin.py``).

The services are the stand-ins of ``rollout_backend.py``; the parts that need no socket are
tested in ``tests/unit/rollout/test_local_router.py``.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from metarec.errors import RouterError
from metarec.rollout.metrics import histogram_quantile, parse_router_metrics
from metarec.rollout.routers import HTTPRouterClient, LocalWeightedRouter, Router, Weights
from metarec.rollout.routers.local import user_bucket

pytestmark = pytest.mark.integration


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


backend = _load(
    Path(__file__).resolve().parent / "rollout_backend.py", "metarec_rollout_test_backend"
)


@pytest.fixture
def proxied():
    production = backend.FakeService(model_version="metarec:v1").start()
    canary = backend.FakeService(model_version="metarec:v2").start()
    router = LocalWeightedRouter(production_url=production.url, canary_url=canary.url, seed=1)
    router.start()
    yield router
    router.stop()
    production.stop()
    canary.stop()


def test_sticky_per_user_and_monotonic_in_the_weight(proxied: LocalWeightedRouter):
    assert isinstance(proxied, Router)
    proxied.set_weights(production=75, canary=25)
    with httpx.Client(base_url=proxied.url) as client:
        sides = {}
        for user in range(1, 201):
            seen = {
                client.post("/predict", json={"user_id": user, "item_ids": [1]}).headers[
                    "x-metarec-backend"
                ]
                for _ in range(2)
            }
            assert len(seen) == 1  # the same user always lands on the same side
            sides[user] = seen.pop()
            assert sides[user] == ("canary" if user_bucket(user) < 25 else "production")
        assert 25 < sum(s == "canary" for s in sides.values()) < 75
        # Feedback follows the user's side too.
        feedback = {"events": [{"user_id": 3, "item_id": 1, "rating": 4}]}
        assert client.post("/feedback", json=feedback).headers["x-metarec-backend"] == sides[3]
        proxied.set_weights(production=50, canary=50)
        for user, side in sides.items():
            if side == "canary":  # raising the weight never moves a canary user back
                response = client.post("/predict", json={"user_id": user, "item_ids": [1]})
                assert response.headers["x-metarec-backend"] == "canary"


def test_weight_changes_under_load_drop_nothing(proxied: LocalWeightedRouter):
    results: list[tuple[str | None, int | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(offset: int) -> None:
        with httpx.Client(base_url=proxied.url, timeout=10) as client:
            for i in range(400):  # bounded by count …
                if stop.is_set():  # … and by the test's end
                    return
                try:
                    response = client.post(
                        "/predict", json={"user_id": offset + i, "item_ids": [2]}
                    )
                    outcome = (response.headers.get("x-metarec-backend"), response.status_code)
                except httpx.HTTPError:
                    outcome = (None, None)
                with lock:
                    results.append(outcome)

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    changes = 0
    while time.monotonic() < deadline and (len(results) < 600 or changes < 50):
        canary = [0, 10, 25, 50, 100][changes % 5]
        proxied.set_weights(production=100 - canary, canary=canary)
        assert sum(vars(proxied.weights()).values()) == 100
        changes += 1
        time.sleep(0.002)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) >= 600 and changes >= 50
    assert all(status == 200 for _, status in results)
    assert {side for side, _ in results} <= {"production", "canary"}


def test_admin_endpoint_and_http_client(proxied: LocalWeightedRouter):
    remote = HTTPRouterClient(url=proxied.admin_url, admin_token=proxied.admin_token)
    assert isinstance(remote, Router)
    remote.set_weights(production=40, canary=60)
    assert proxied.weights() == Weights(production=40, canary=60) == remote.weights()
    with pytest.raises(RouterError, match="sum to 100"):
        remote.set_weights(production=40, canary=40)
    refused = httpx.put(
        f"{proxied.admin_url}/-/rollout/weights",
        json={"production": 1, "canary": 2},
        headers=_auth(proxied),
    )
    assert refused.status_code == 400 and "sum to 100" in refused.json()["error"]
    assert proxied.weights() == Weights(production=40, canary=60)


def _auth(router: LocalWeightedRouter) -> dict[str, str]:
    return {"authorization": f"Bearer {router.admin_token}"}


def test_unreachable_backend_is_a_502_naming_the_side():
    router = LocalWeightedRouter(
        production_url="http://127.0.0.1:9", canary_url="http://127.0.0.1:9", timeout_s=2
    ).start()
    try:
        response = httpx.post(f"{router.url}/predict", json={"user_id": 1, "item_ids": [1]})
        assert response.status_code == 502 and "production" in response.json()["error"]
        # The backend never answered, so only the caller can count it: a 5xx.
        metrics = httpx.get(f"{router.admin_url}/-/rollout/metrics", headers=_auth(router))
        seen = parse_router_metrics(metrics.text)
        assert (seen["production"].requests, seen["production"].errors) == (1, 1)
        assert seen["canary"].requests == 0
    finally:
        router.stop()


def test_router_counts_what_each_backend_answered_as_the_caller_saw_it():
    production = backend.FakeService(model_version="metarec:v1").start()
    canary = backend.FakeService(model_version="metarec:v2", error_every=5, latency_s=0.2)
    canary.start()
    router = LocalWeightedRouter(production_url=production.url, canary_url=canary.url).start()
    try:
        router.set_weights(production=50, canary=50)
        users = {"production": [], "canary": []}
        for user in range(1, 200):
            users["canary" if user_bucket(user) < 50 else "production"].append(user)
        with httpx.Client(base_url=router.url, timeout=10) as client:
            for user in users["production"][:30] + users["canary"][:10]:
                client.post("/predict", json={"user_id": user, "item_ids": [1]})
            assert client.get("/metadata").status_code == 200  # proxied, not analysed
            # /metrics is still proxied to a service: the router's own are on its admin port.
            assert "metarec_requests_total" in client.get("/metrics").text
            assert client.get("/-/rollout/metrics").status_code == 404
        exposition = httpx.get(f"{router.admin_url}/-/rollout/metrics", headers=_auth(router))
        assert exposition.status_code == 200
        assert exposition.headers["x-metarec-backend"] == "router"
        assert exposition.headers["content-type"].startswith("text/plain")
        text = exposition.text
        assert (
            'metarec_router_requests_total{backend="canary",endpoint="predict",status="5xx"} 2.0'
            in text
        )
        seen = parse_router_metrics(text)  # analysed endpoints only
        assert (seen["production"].requests, seen["production"].errors) == (30, 0)
        assert (seen["canary"].requests, seen["canary"].errors) == (10, 2)
        # Latency as the caller measured it: the canary's 0.2 s sleep (8 of its 10 answers).
        assert histogram_quantile(0.5, seen["canary"].buckets) > 0.15
        assert histogram_quantile(0.99, seen["production"].buckets) < 0.15
        assert seen["canary"].buckets[float("inf")] == 10
    finally:
        router.stop()
        production.stop()
        canary.stop()


def test_stop_lets_requests_in_flight_finish():
    slow = backend.FakeService(model_version="metarec:v1", latency_s=0.5).start()
    router = LocalWeightedRouter(production_url=slow.url, canary_url=slow.url).start()
    statuses: list[int | None] = []

    def call(user: int) -> None:
        try:
            response = httpx.post(
                f"{router.url}/predict", json={"user_id": user, "item_ids": [1]}, timeout=10
            )
            statuses.append(response.status_code)
        except httpx.HTTPError:
            statuses.append(None)

    threads = [threading.Thread(target=call, args=(user,)) for user in range(5)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while slow._count < 5 and time.monotonic() < deadline:  # all five inside the backend
            time.sleep(0.01)
        assert slow._count == 5
        router.stop()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        slow.stop()
    assert statuses == [200] * 5

"""Metric sources over HTTP: the Prometheus API (a local stand-in answering its JSON shapes) and
scrapes of the services' and the router's ``/metrics``.

The parsing itself is tested in ``tests/unit/rollout/test_metrics.py``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from metarec.errors import MetricSourceError
from metarec.rollout import RolloutSpec, RolloutState
from metarec.rollout.metrics import PrometheusMetricSource, ScrapeMetricSource
from metarec.rollout.routers.local import LocalWeightedRouter, user_bucket
from prometheus_client import CollectorRegistry, Counter, generate_latest

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


@pytest.fixture(autouse=True)
def _in_process_metric_values(monkeypatch):
    """Keep each test registry's values in this process.

    Importing BentoML (other tests do) switches prometheus_client to multiprocess value files,
    which would carry counts from one test registry into the next.
    """
    from prometheus_client import values

    monkeypatch.setattr(values, "ValueClass", values.MutexValue)


STATE = RolloutState(id="r1", model="metarec", version=3, production_version=2, spec=RolloutSpec())


class FakePrometheus:
    """Answers /api/v1/query with Prometheus' JSON shapes; records the queries."""

    def __init__(self, answers):
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_GET(self):
                query = parse_qs(urlparse(self.path).query)["query"][0]
                fake.queries.append(query)
                payload = answers(query)
                body = json.dumps(payload).encode()
                self.send_response(200 if payload["status"] == "success" else 400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def vector(value):
    result = [] if value is None else [{"metric": {}, "value": [1764561600.0, str(value)]}]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def answers(query: str):
    canary = 'model_version="metarec:v3"' in query
    if "histogram_quantile" in query:
        return vector(0.12 if canary else "NaN")
    if 'status=~"5.."' in query:
        return vector(6 if canary else None)
    if "metarec_requests_total" in query:
        return vector(200 if canary else 1800)
    if "metarec_feedback_total" in query:
        return vector(40 if canary else 400)
    if "metarec_feedback_abs_error_sum" in query:
        return vector(36.0 if canary else 320.0)
    if "metarec_feedback_positive_total" in query:
        return vector(25 if canary else 200)
    if "metarec_feedback_hits_total" in query:
        return vector(5 if canary else 80)
    return {"status": "error", "errorType": "bad_data", "error": "unknown"}


@pytest.fixture
def prometheus():
    server = FakePrometheus(answers)
    yield server
    server.close()


def test_prometheus_source_reads_both_versions_over_the_window(prometheus):
    source = PrometheusMetricSource(url=prometheus.url)
    source.start_window(STATE)
    metrics = source.read_window(STATE, window_s=30.4)
    assert metrics.window_s == 30.4
    assert metrics.canary.requests == 200 and metrics.canary.errors == 6
    assert metrics.canary.p99_ms == pytest.approx(120.0)
    assert metrics.canary.online_mae == pytest.approx(0.9)
    assert metrics.production.requests == 1800 and metrics.production.errors == 0
    assert metrics.production.p99_ms is None  # NaN: no observations
    assert metrics.production.online_mae == pytest.approx(0.8)
    assert metrics.canary.positive_feedback == 25 and metrics.canary.hits == 5
    assert metrics.canary.online_hit_rate == pytest.approx(0.2)
    assert metrics.production.online_hit_rate == pytest.approx(0.4)
    assert (
        'sum(increase(metarec_feedback_hits_total{model_version="metarec:v3"}[30s]))'
        in prometheus.queries
    )
    assert all("[30s]" in q for q in prometheus.queries)
    assert any('model_version="metarec:v2"' in q for q in prometheus.queries)
    p99 = next(q for q in prometheus.queries if "histogram_quantile" in q and "v3" in q)
    assert p99.startswith("histogram_quantile(0.99, sum by (le) (rate(")


def test_prometheus_errors_name_the_fix(prometheus):
    source = PrometheusMetricSource(url=prometheus.url)
    with pytest.raises(MetricSourceError, match="bad_data"):
        source.query("up")
    unreachable = PrometheusMetricSource(url="http://127.0.0.1:9", timeout_s=1)
    with pytest.raises(MetricSourceError, match=r"rollout\.prometheus_url"):
        unreachable.read_window(STATE, window_s=10)


def test_scrape_source_takes_traffic_from_the_router_and_quality_from_the_services():
    import httpx

    production = backend.FakeService(model_version="metarec:v2", bias=0.5).start()
    canary = backend.FakeService(model_version="metarec:v3", bias=1.5).start()
    router = LocalWeightedRouter(production_url=production.url, canary_url=canary.url).start()
    router.set_weights(production=50, canary=50)
    source = ScrapeMetricSource(
        production_url=production.url,
        canary_url=canary.url,
        router_url=router.admin_url,  # the router's metrics are on its admin API …
        router_token=router.admin_token,  # … behind its token
    )
    canary_users = [u for u in range(1, 300) if user_bucket(u) < 50][:12]
    production_users = [u for u in range(1, 300) if user_bucket(u) >= 50][:8]
    try:
        with httpx.Client(base_url=router.url) as client:
            client.post("/predict", json={"user_id": canary_users[0], "item_ids": [1]})
            source.start_window(STATE)  # what came before the window is not counted
            for user in canary_users[1:] + production_users:
                client.post("/predict", json={"user_id": user, "item_ids": [1]})
                event = {"user_id": user, "item_id": 1, "rating": backend.true_rating(user, 1)}
                client.post("/feedback", json={"events": [event]})
            healthy = source.read_window(STATE, window_s=5.0)
            # The canary crashes: the router counts what it no longer answers as 5xx, and the
            # window still reads (without the canary's own feedback counters).
            canary.crash()
            for user in canary_users[:4]:
                response = client.post("/predict", json={"user_id": user, "item_ids": [1]})
                assert response.status_code == 502
            crashed = source.read_window(STATE, window_s=6.0)
    finally:
        router.stop()
        production.stop()
    assert healthy.canary.requests == 22 and healthy.canary.errors == 0  # 11 predict + 11 feedback
    assert healthy.production.requests == 16
    assert healthy.canary.p99_ms is not None and healthy.canary.p99_ms > 0
    assert healthy.canary.feedback == 11 and healthy.canary.online_mae == pytest.approx(1.5)
    assert healthy.production.online_mae == pytest.approx(0.5)
    assert crashed.canary.requests == 26 and crashed.canary.errors == 4
    assert crashed.canary.error_rate == pytest.approx(4 / 26)
    assert crashed.canary.feedback == 0  # its /metrics is gone: no online quality for it
    assert crashed.production.feedback == 8


def test_scrape_source_without_router_reads_the_services_traffic():
    production = backend.FakeService(model_version="metarec:v2").start()
    canary = backend.FakeService(model_version="metarec:v3", error_every=2).start()
    source = ScrapeMetricSource(production_url=production.url, canary_url=canary.url)
    try:
        import httpx

        source.start_window(STATE)
        for user in range(4):
            httpx.post(f"{canary.url}/predict", json={"user_id": user, "item_ids": [1]})
        metrics = source.read_window(STATE, window_s=1.0)
        canary.stop()
        with pytest.raises(MetricSourceError, match="canary service"):
            source.read_window(STATE, window_s=2.0)
    finally:
        production.stop()
    assert (metrics.canary.requests, metrics.canary.errors) == (4, 2)


def test_each_side_reads_only_its_own_version_from_a_shared_exposition():
    """`bentoml serve` processes of one home share a multiprocess dir: /metrics lists both."""
    registry = CollectorRegistry()
    feedback = Counter("metarec_feedback", "f", ["model_version"], registry=registry)
    errors = Counter("metarec_feedback_abs_error_sum", "e", ["model_version"], registry=registry)
    body = [b""]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_GET(self):
            self.send_response(200)
            self.send_header("content-length", str(len(body[0])))
            self.end_headers()
            self.wfile.write(body[0])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    source = ScrapeMetricSource(production_url=url, canary_url=url)
    try:
        body[0] = generate_latest(registry)
        source.start_window(STATE)
        feedback.labels("metarec:v2").inc(100)  # production (v2): MAE 0.5
        errors.labels("metarec:v2").inc(50)
        feedback.labels("metarec:v3").inc(10)  # canary (v3): MAE 2.0
        errors.labels("metarec:v3").inc(20)
        body[0] = generate_latest(registry)
        window = source.read_window(STATE, window_s=1.0)
    finally:
        server.shutdown()
        server.server_close()
    assert window.production.feedback == 100 and window.production.online_mae == 0.5
    assert window.canary.feedback == 10 and window.canary.online_mae == 2.0


def test_scrape_source_reads_each_services_hits():
    import httpx

    production = backend.FakeService(model_version="metarec:v2").start()
    canary = backend.FakeService(model_version="metarec:v3").start()
    source = ScrapeMetricSource(production_url=production.url, canary_url=canary.url)
    try:
        source.start_window(STATE)
        for service, liked in ((canary, (1, 9)), (production, (1, 2))):
            for user in (4, 5):
                httpx.post(
                    f"{service.url}/recommend",
                    json={"user_id": user, "candidates": [1, 2, 3], "k": 3},
                )
                events = [{"user_id": user, "item_id": i, "rating": 5.0} for i in liked]
                events.append({"user_id": user, "item_id": 2, "rating": 1.0})  # not positive
                events.append({"user_id": 77, "item_id": 1, "rating": 5.0})  # never served
                httpx.post(f"{service.url}/feedback", json={"events": events})
        window = source.read_window(STATE, window_s=1.0)
    finally:
        production.stop()
        canary.stop()
    assert (window.canary.positive_feedback, window.canary.hits) == (4, 2)
    assert window.canary.online_hit_rate == pytest.approx(0.5)
    assert window.production.online_hit_rate == pytest.approx(1.0)

"""Metric parsing: /metrics text with windowed deltas, histogram p99, per model version.

The sources that read over HTTP (a scrape of services and router, the Prometheus API) are
tested in ``tests/integration/test_rollout_metric_sources.py``.
"""

from __future__ import annotations

import pytest
from metarec.rollout.metrics import histogram_quantile, parse_metrics, window_between
from prometheus_client import CollectorRegistry, Counter, Histogram, Summary, generate_latest


@pytest.fixture(autouse=True)
def _in_process_metric_values(monkeypatch):
    """Keep each test registry's values in this process.

    Importing BentoML (other tests do) switches prometheus_client to multiprocess value files,
    which would carry counts from one test registry into the next.
    """
    from prometheus_client import values

    monkeypatch.setattr(values, "ValueClass", values.MutexValue)


def exposition(requests: dict, latencies: list[float], abs_errors: list[float]) -> str:
    """Real prometheus_client output with the adaptation service's metric names."""
    registry = CollectorRegistry()
    counter = Counter(
        "metarec_requests_total", "r", ["endpoint", "model_version", "status"], registry=registry
    )
    for (endpoint, status), count in requests.items():
        counter.labels(endpoint, "metarec:v3", status).inc(count)
    histogram = Histogram(
        "metarec_request_latency_seconds", "l", ["endpoint", "model_version"], registry=registry
    )
    for latency in latencies:
        histogram.labels("predict", "metarec:v3").observe(latency)
    feedback = Counter("metarec_feedback", "f", ["model_version"], registry=registry)
    summary = Summary("metarec_feedback_abs_error", "e", ["model_version"], registry=registry)
    for error in abs_errors:
        feedback.labels("metarec:v3").inc()
        summary.labels("metarec:v3").observe(error)
    return generate_latest(registry).decode()


def test_parse_counts_traffic_endpoints_and_5xx_only():
    text = exposition(
        {("predict", "2xx"): 90, ("predict", "5xx"): 10, ("metadata", "2xx"): 500},
        [0.01] * 10,
        [0.5, 1.5],
    )
    scrape = parse_metrics(text)
    assert scrape.requests == 100 and scrape.errors == 10  # metadata is not traffic
    assert scrape.feedback == 2 and scrape.abs_error_sum == pytest.approx(2.0)
    assert parse_metrics(text, model_version="metarec:v9").requests == 0


def test_window_is_the_difference_of_two_scrapes():
    before = parse_metrics(exposition({("predict", "2xx"): 100}, [0.01] * 100, [0.5] * 10))
    after = parse_metrics(
        exposition(
            {("predict", "2xx"): 180, ("predict", "5xx"): 20},
            [0.01] * 100 + [0.01] * 95 + [0.4] * 5,
            [0.5] * 10 + [1.0] * 20,
        )
    )
    window = window_between(before, after)
    assert window.requests == 100 and window.errors == 20
    assert window.error_rate == pytest.approx(0.2)
    assert window.online_mae == pytest.approx(1.0)  # only the window's feedback
    assert 250 < window.p99_ms <= 500  # the window's slow 5 % lie in the (0.25, 0.5] bucket


def test_counter_reset_counts_from_zero():
    before = parse_metrics(exposition({("predict", "2xx"): 1000}, [], []))
    after = parse_metrics(exposition({("predict", "2xx"): 30}, [], []))
    assert window_between(before, after).requests == 30


def test_histogram_quantile_matches_prometheus_interpolation():
    buckets = {0.1: 50.0, 0.2: 90.0, 0.4: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.2 + 0.2 * 9 / 10)
    assert histogram_quantile(0.99, {0.1: 0.0, float("inf"): 0.0}) is None
    assert histogram_quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == pytest.approx(0.1)


def test_windowed_hit_rate_from_the_services_own_series():
    """Real ServingMetrics output: Δ hits / Δ positive feedback, per model version."""
    from metarec.serving.metrics import ServingMetrics

    canary = ServingMetrics(model_version="metarec:v3")
    production = ServingMetrics(model_version="metarec:v2")
    canary.observe_hits(10, 9, 0.9)  # before the window
    before = (
        generate_latest(canary.registry).decode() + generate_latest(production.registry).decode()
    )
    canary.observe_hits(20, 5, 0.47)
    production.observe_hits(40, 20, 0.5)
    after = (
        generate_latest(canary.registry).decode() + generate_latest(production.registry).decode()
    )
    windows = {
        version: window_between(
            parse_metrics(before, model_version=version),
            parse_metrics(after, model_version=version),
        )
        for version in ("metarec:v3", "metarec:v2")
    }
    assert windows["metarec:v3"].positive_feedback == 20 and windows["metarec:v3"].hits == 5
    assert windows["metarec:v3"].online_hit_rate == pytest.approx(0.25)
    assert windows["metarec:v2"].online_hit_rate == pytest.approx(0.5)
    assert window_between(parse_metrics(before), parse_metrics(before)).online_hit_rate is None

"""Producers expose every series the canary analysis reads, under the contract's names."""

from __future__ import annotations

from metarec import metrics_contract as contract
from metarec.rollout import metrics as analysis
from metarec.rollout.routers.local_metrics import RouterMetrics
from metarec.serving.metrics import ServingMetrics
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families


def _samples(text: str) -> dict[str, set[str]]:
    """Sample name → the label names it carries."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def test_the_adaptation_service_exposes_what_the_analysis_reads():
    # Its own version label: serving metrics of one process share their series.
    metrics = ServingMetrics(model_version="metarec:contract-test")
    metrics.observe_request("predict", 200, 0.01)
    metrics.observe_feedback([0.5], 0.5)
    metrics.observe_hits(1, 1, 1.0)
    samples = _samples(generate_latest(metrics.registry).decode())
    read = {
        analysis.REQUESTS,
        analysis.LATENCY_BUCKET,
        analysis.FEEDBACK,
        analysis.ABS_ERROR,
        analysis.POSITIVE,
        analysis.HITS,
    }
    assert read <= samples.keys()
    assert {contract.ENDPOINT, contract.MODEL_VERSION, contract.STATUS} <= samples[
        contract.REQUESTS
    ]
    assert contract.LE in samples[contract.bucket(contract.REQUEST_LATENCY)]
    assert all(contract.MODEL_VERSION in samples[name] for name in read)


def test_the_router_exposes_what_the_analysis_reads():
    metrics = RouterMetrics()
    metrics.observe(backend="canary", endpoint="predict", status=200, seconds=0.01)
    samples = _samples(metrics.exposition().decode())
    assert {contract.BACKEND, contract.ENDPOINT, contract.STATUS} <= samples[
        contract.ROUTER_REQUESTS
    ]
    assert contract.LE in samples[contract.bucket(contract.ROUTER_LATENCY)]
    windows = analysis.parse_router_metrics(metrics.exposition().decode())
    assert windows["canary"].requests == 1

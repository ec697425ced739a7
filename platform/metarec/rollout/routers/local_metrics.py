"""What the local weighted router saw of each backend, as Prometheus metrics (the caller's view).

The series names and labels are the metrics contract's (:mod:`metarec.metrics_contract`), which
the canary analysis (:func:`metarec.rollout.metrics.parse_router_metrics`) reads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from metarec import metrics_contract as contract

# Endpoints that get their own label value; every other path is counted as "other".
ROUTED_ENDPOINTS = contract.TRAFFIC_ENDPOINTS
ROUTER_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


def endpoint_label(path: str) -> str:
    """The ``endpoint`` label of a proxied path: ``/predict?x=1`` → ``predict``, else ``other``.

    Bounded on purpose: a label per arbitrary path would grow without limit.
    """
    name = path.split("?", 1)[0].strip("/").split("/")[-1]
    return name if name in ROUTED_ENDPOINTS else "other"


class RouterMetrics:
    """What the router saw of each backend, as the caller: a Prometheus collector.

    Per ``backend`` (``production``/``canary``) and ``endpoint``: forwarded requests by status
    class (``metarec_router_requests_total{backend,endpoint,status="2xx|4xx|5xx"}``) and their
    latency as the router measured it (``metarec_router_request_duration_seconds`` histogram).
    A request the backend never answered (connection refused or reset, timeout) counts as
    ``5xx``: a crashed or hung canary cannot count its own errors.

    The values are plain numbers under a lock, registered on a ``CollectorRegistry`` owned by
    this instance (no process-global state, and unaffected by prometheus_client's
    multiprocess mode, which BentoML switches on in processes that import it).
    """

    def __init__(self, *, buckets: tuple[float, ...] = ROUTER_LATENCY_BUCKETS) -> None:
        """Start every count at zero.

        Args:
            buckets: Upper bounds (seconds) of the latency histogram, increasing.
        """
        self._bounds = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], tuple[list[int], float]] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def observe(self, *, backend: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one forwarded request.

        Args:
            backend: ``production`` or ``canary``.
            endpoint: The bounded endpoint label (:func:`endpoint_label`).
            status: The HTTP status the backend answered (a 5xx when it did not answer).
            seconds: Time from forwarding the request to having the whole answer.
        """
        key = (backend, endpoint, f"{status // 100}xx")
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            # One count per bucket (not cumulative), the last one for "above every bound".
            counts, total = self._latency.get(
                (backend, endpoint), ([0] * (len(self._bounds) + 1), 0.0)
            )
            index = next(
                (i for i, bound in enumerate(self._bounds) if seconds <= bound), len(self._bounds)
            )
            counts[index] += 1
            self._latency[(backend, endpoint)] = (counts, total + seconds)

    def describe(self) -> list[Metric]:
        """Nothing to describe up front (the registry then does not call :meth:`collect`)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The two families, as prometheus_client's exposition expects."""
        requests = CounterMetricFamily(
            contract.ROUTER_REQUESTS.removesuffix("_total"),
            "Requests the router forwarded, by backend, endpoint and status class (5xx also "
            "when the backend did not answer).",
            labels=[contract.BACKEND, contract.ENDPOINT, contract.STATUS],
        )
        latency = HistogramMetricFamily(
            contract.ROUTER_LATENCY,
            "Latency of forwarded requests as the router measured it (the caller's view).",
            labels=[contract.BACKEND, contract.ENDPOINT],
        )
        with self._lock:
            request_items = sorted(self._requests.items())
            latency_items = sorted((k, (list(c), t)) for k, (c, t) in self._latency.items())
        for labels, count in request_items:
            requests.add_metric(list(labels), count)
        for labels, (counts, total) in latency_items:
            latency.add_metric(list(labels), self._cumulative(counts), total)
        yield requests
        yield latency

    def _cumulative(self, counts: list[int]) -> list[tuple[str, float]]:
        """Per-bucket counts → Prometheus' cumulative ``(le, count)`` pairs, ``+Inf`` last."""
        cumulative, buckets = 0, []
        for bound, count in zip((*self._bounds, math.inf), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if math.isinf(bound) else repr(float(bound)), cumulative))
        return buckets

    def exposition(self) -> bytes:
        """The Prometheus text exposition of these metrics."""
        return generate_latest(self.registry)

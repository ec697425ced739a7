"""Metric sources: windowed production and canary metrics for the analysis.

* :class:`ScrapeMetricSource`: scrapes Prometheus text expositions at the start of the window
  and subtracts (local, the embedded default). With ``router_url`` (what the wiring passes for
  the local routers), requests, 5xx and latency come from the router's caller-side metrics
  (``metarec_router_requests_total{backend,endpoint,status}``,
  ``metarec_router_request_duration_seconds``, see
  :class:`~metarec.rollout.routers.local_metrics.RouterMetrics`):
  what clients experienced, including answers a crashed canary never gave and faults between
  the router and the service. Without it, they come from the services' own ``/metrics``.
* :class:`PrometheusMetricSource`: queries the Prometheus HTTP API with ``increase`` and
  ``histogram_quantile`` over the window (cluster).

Online quality always comes from the adaptation service's own metrics, labelled
``model_version``: ``metarec_feedback_total`` and ``metarec_feedback_abs_error_sum`` (windowed
online MAE = Δ sum / Δ count), ``metarec_feedback_positive_total`` and
``metarec_feedback_hits_total`` (windowed online hit rate = Δ hits / Δ positives); its
``metarec_requests_total{endpoint,model_version,status}`` and
``metarec_request_latency_seconds`` are the service-side traffic series. Every series and
label name comes from :mod:`metarec.metrics_contract`, which the producers import too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from metarec import metrics_contract as contract
from metarec.errors import MetricSourceError
from metarec.rollout.types import RolloutState, ServiceWindow, WindowMetrics

log = logging.getLogger(__name__)

REQUESTS = contract.REQUESTS
LATENCY_BUCKET = contract.bucket(contract.REQUEST_LATENCY)
FEEDBACK = contract.FEEDBACK
ABS_ERROR = contract.FEEDBACK_ABS_ERROR_SUM
POSITIVE = contract.FEEDBACK_POSITIVE
HITS = contract.FEEDBACK_HITS
# Endpoints whose requests the analysis counts (health, metadata and /metrics are not traffic).
ANALYSED_ENDPOINTS = contract.TRAFFIC_ENDPOINTS


@runtime_checkable
class MetricSource(Protocol):
    """Reads production and canary metrics over the current analysis window."""

    def start_window(self, state: RolloutState) -> None:
        """Begin a new analysis window for ``state`` (now)."""
        ...

    def read_window(self, state: RolloutState, *, window_s: float) -> WindowMetrics:
        """Production and canary metrics since the window began (``window_s`` seconds ago)."""
        ...


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram, as Prometheus' ``histogram_quantile``.

    Args:
        q: Quantile in [0, 1].
        buckets: Upper bound (``le``, ``inf`` included) → cumulative count.

    Returns:
        The interpolated quantile (None without observations).
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, previous = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # above the highest finite bucket: its upper bound
            in_bucket = count - previous
            if in_bucket <= 0:
                return bound
            return lower + (bound - lower) * (rank - previous) / in_bucket
        lower, previous = bound, count
    return lower


@dataclass
class _Scrape:
    """Totals of one service's /metrics at one moment."""

    requests: float = 0.0
    errors: float = 0.0
    feedback: float = 0.0
    abs_error_sum: float = 0.0
    positive_feedback: float = 0.0
    hits: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    has_feedback: bool = True  # False: the service's own /metrics could not be read


def _endpoint_counted(labels: dict[str, str]) -> bool:
    endpoint = labels.get(contract.ENDPOINT)
    return endpoint is None or endpoint.strip("/").split("/")[-1] in ANALYSED_ENDPOINTS


def parse_metrics(text: str, *, model_version: str | None = None) -> _Scrape:
    """Sum the MetaRec series of a Prometheus text exposition.

    Args:
        text: The ``/metrics`` body.
        model_version: Only series with this ``model_version`` label (None: all).

    Returns:
        The totals (requests, 5xx errors, feedback, absolute-error sum, positive feedback,
        hits, latency buckets).
    """
    scrape = _Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if model_version is not None and labels.get(contract.MODEL_VERSION) != model_version:
                continue
            name, value = sample.name, float(sample.value)
            if name == REQUESTS and _endpoint_counted(labels):
                scrape.requests += value
                if str(labels.get(contract.STATUS, "")).startswith("5"):
                    scrape.errors += value
            elif name == LATENCY_BUCKET and _endpoint_counted(labels):
                bound = float(labels[contract.LE])
                scrape.buckets[bound] = scrape.buckets.get(bound, 0.0) + value
            elif name == FEEDBACK:
                scrape.feedback += value
            elif name in (ABS_ERROR, f"{ABS_ERROR}_total"):
                scrape.abs_error_sum += value
            elif name == POSITIVE:
                scrape.positive_feedback += value
            elif name == HITS:
                scrape.hits += value
    return scrape


def parse_router_metrics(text: str) -> dict[str, _Scrape]:
    """The router's caller-side series of a Prometheus text exposition, per backend.

    Args:
        text: The router's ``/-/rollout/metrics`` body.

    Returns:
        ``{"production": …, "canary": …}``: requests, 5xx (answered or not) and latency buckets
        of the analysed endpoints; the feedback fields are left empty.
    """
    scrapes = {"production": _Scrape(), "canary": _Scrape()}
    latency_bucket = contract.bucket(contract.ROUTER_LATENCY)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            scrape = scrapes.get(labels.get(contract.BACKEND, ""))
            if scrape is None or not _endpoint_counted(labels):
                continue
            value = float(sample.value)
            if sample.name == contract.ROUTER_REQUESTS:
                scrape.requests += value
                if str(labels.get(contract.STATUS, "")).startswith("5"):
                    scrape.errors += value
            elif sample.name == latency_bucket:
                bound = float(labels[contract.LE])
                scrape.buckets[bound] = scrape.buckets.get(bound, 0.0) + value
    return scrapes


def _delta(now: float, then: float) -> float:
    # A counter that went down was reset (service restart): count from zero, as Prometheus does.
    return now - then if now >= then else now


def window_between(before: _Scrape, after: _Scrape) -> ServiceWindow:
    """What a service did between two scrapes."""
    buckets = {
        bound: _delta(count, before.buckets.get(bound, 0.0))
        for bound, count in after.buckets.items()
    }
    p99 = histogram_quantile(0.99, buckets)
    known = before.has_feedback and after.has_feedback

    def quality(name: str) -> float:
        return _delta(getattr(after, name), getattr(before, name)) if known else 0.0

    return ServiceWindow(
        requests=_delta(after.requests, before.requests),
        errors=_delta(after.errors, before.errors),
        p99_ms=None if p99 is None else p99 * 1000.0,
        feedback=quality("feedback"),
        abs_error_sum=quality("abs_error_sum"),
        positive_feedback=quality("positive_feedback"),
        hits=quality("hits"),
    )


class ScrapeMetricSource:
    """Scrapes Prometheus text expositions at the window's edges (local rollouts).

    Traffic (requests, 5xx, latency p99) comes from the router's caller-side metrics when
    ``router_url`` is given, else from each service's own ``/metrics``; online quality
    (feedback count, absolute-error sum, positive feedback and hits) always comes from the
    services' ``/metrics``.
    """

    def __init__(
        self,
        *,
        production_url: str,
        canary_url: str,
        router_url: str | None = None,
        router_token: str | None = None,
        version_label: str = "{model}:v{version}",
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Address both services (and the router).

        Args:
            production_url: Base URL of the production service (``/metrics`` is appended).
            canary_url: Base URL of the canary service.
            router_url: Base URL of the admin API of a
                :class:`~metarec.rollout.routers.local.LocalWeightedRouter`
                (``/-/rollout/metrics`` is appended); None: traffic from the services.
            router_token: The router's admin bearer token (sent with the router scrape).
            version_label: How the services write the ``model_version`` label (``{model}``,
                ``{version}``). Only each side's own version is read from its ``/metrics``:
                ``bentoml serve`` processes started from one home share a Prometheus
                multiprocess directory, so one service's ``/metrics`` can list the other's.
            timeout_s: Timeout per scrape.
            clock: Monotonic clock (tests pass their own).
        """
        self._urls = {"production": production_url.rstrip("/"), "canary": canary_url.rstrip("/")}
        self._router_url = (
            None if router_url is None else router_url.rstrip("/") + contract.ROUTER_METRICS_PATH
        )
        self._router_headers = (
            {} if router_token is None else {"authorization": f"Bearer {router_token}"}
        )
        self._label = version_label
        self._timeout = timeout_s
        self._clock = clock
        self._baselines: dict[str, dict[str, _Scrape]] = {}

    def _get(self, url: str, what: str, fix: str, headers: dict[str, str] | None = None) -> str:
        try:
            response = httpx.get(url, headers=headers, timeout=self._timeout)
            response.raise_for_status()
            return response.text
        except httpx.HTTPError as exc:
            raise MetricSourceError(
                f"Cannot scrape the {what}'s metrics at {url} ({exc}).", fix=fix
            ) from exc

    def _version_label(self, state: RolloutState, which: str) -> str | None:
        version = state.version if which == "canary" else state.production_version
        return None if version is None else self._label.format(model=state.model, version=version)

    def _scrape_service(self, state: RolloutState, which: str) -> _Scrape:
        url = f"{self._urls[which]}/metrics"
        text = self._get(
            url,
            f"{which} service",
            f"check that the {which} service runs and serves Prometheus /metrics.",
        )
        try:
            return parse_metrics(text, model_version=self._version_label(state, which))
        except ValueError as exc:
            raise MetricSourceError(
                f"The {which} service's metrics at {url} are not Prometheus text ({exc}).",
                fix=f"point rollout.{which}_url at the adaptation service.",
            ) from exc

    def _scrape(self, state: RolloutState) -> dict[str, _Scrape]:
        if self._router_url is None:
            return {which: self._scrape_service(state, which) for which in ("production", "canary")}
        text = self._get(
            self._router_url,
            "router",
            "check that the rollout router runs and that rollout.router.url is its admin URL "
            "and rollout.router.admin_token its token.",
            self._router_headers,
        )
        try:
            traffic = parse_router_metrics(text)
        except ValueError as exc:
            raise MetricSourceError(
                f"The router's metrics at {self._router_url} are not Prometheus text ({exc}).",
                fix="point rollout.router.url at `metarec rollout router`.",
            ) from exc
        for which, scrape in traffic.items():
            try:
                quality = self._scrape_service(state, which)
            except MetricSourceError as exc:
                # A crashed service has no feedback to give, but the router still saw its
                # failures: the window goes on without online quality for it.
                log.warning("%s", exc)
                scrape.has_feedback = False
                continue
            scrape.feedback, scrape.abs_error_sum = quality.feedback, quality.abs_error_sum
            scrape.positive_feedback, scrape.hits = quality.positive_feedback, quality.hits
        return traffic

    def start_window(self, state: RolloutState) -> None:
        """Remember the counters now."""
        self._baselines[state.id] = self._scrape(state)

    def read_window(self, state: RolloutState, *, window_s: float) -> WindowMetrics:
        """Counters now minus at the window's start (a fresh window if none was started here)."""
        baseline = self._baselines.get(state.id)
        if baseline is None:  # e.g. the controller restarted: the window starts over
            self.start_window(state)
            return WindowMetrics(window_s=0.0)
        now = self._scrape(state)
        return WindowMetrics(
            window_s=window_s,
            production=window_between(baseline["production"], now["production"]),
            canary=window_between(baseline["canary"], now["canary"]),
        )


class PrometheusMetricSource:
    """Queries the Prometheus HTTP API (cluster rollouts)."""

    def __init__(
        self,
        *,
        url: str,
        version_label: str = "{model}:v{version}",
        timeout_s: float = 10.0,
    ) -> None:
        """Address a Prometheus server.

        Args:
            url: Prometheus base URL (``/api/v1/query`` is appended).
            version_label: How the service writes the ``model_version`` label (a format string
                with ``{model}`` and ``{version}``).
            timeout_s: Timeout per query.
        """
        self._url = url.rstrip("/") + "/api/v1/query"
        self._label = version_label
        self._timeout = timeout_s

    def start_window(self, state: RolloutState) -> None:
        """Nothing to remember: the queries cover the window by its length."""

    def query(self, promql: str) -> float | None:
        """Run an instant query; the value of its single sample (None: no sample or NaN).

        Raises:
            MetricSourceError: Prometheus is unreachable or answers an error.
        """
        try:
            response = httpx.get(self._url, params={"query": promql}, timeout=self._timeout)
            payload = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MetricSourceError(
                f"Prometheus at {self._url} did not answer the query {promql!r} ({exc}).",
                fix="check rollout.prometheus_url and that Prometheus is reachable.",
            ) from exc
        if payload.get("status") != "success":
            raise MetricSourceError(
                f"Prometheus refused {promql!r}: {payload.get('errorType')}: "
                f"{payload.get('error')}.",
                fix="check that Prometheus scrapes the adaptation services.",
            )
        result = payload["data"]["result"]
        if payload["data"]["resultType"] == "scalar":
            value = float(result[1])
        elif not result:
            return None
        else:
            value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def _service(self, version_label: str | None, window: str) -> ServiceWindow:
        if version_label is None:
            return ServiceWindow()
        selector = f'{contract.MODEL_VERSION}="{version_label}"'
        endpoints = f'{contract.ENDPOINT}=~"/?({"|".join(ANALYSED_ENDPOINTS)})"'
        server_errors = f'{endpoints},{contract.STATUS}=~"5.."'

        def total(promql: str) -> float:
            return self.query(promql) or 0.0

        p99 = self.query(
            "histogram_quantile(0.99, sum by (le) (rate("
            f"{LATENCY_BUCKET}{{{selector},{endpoints}}}[{window}])))"
        )
        return ServiceWindow(
            requests=total(f"sum(increase({REQUESTS}{{{selector},{endpoints}}}[{window}]))"),
            errors=total(f"sum(increase({REQUESTS}{{{selector},{server_errors}}}[{window}]))"),
            p99_ms=None if p99 is None else p99 * 1000.0,
            feedback=total(f"sum(increase({FEEDBACK}{{{selector}}}[{window}]))"),
            abs_error_sum=total(f"sum(increase({ABS_ERROR}{{{selector}}}[{window}]))"),
            positive_feedback=total(f"sum(increase({POSITIVE}{{{selector}}}[{window}]))"),
            hits=total(f"sum(increase({HITS}{{{selector}}}[{window}]))"),
        )

    def read_window(self, state: RolloutState, *, window_s: float) -> WindowMetrics:
        """Both versions' metrics over the last ``window_s`` seconds."""
        window = f"{max(1, round(window_s))}s"
        production = (
            None
            if state.production_version is None
            else self._label.format(model=state.model, version=state.production_version)
        )
        canary = self._label.format(model=state.model, version=state.version)
        return WindowMetrics(
            window_s=window_s,
            production=self._service(production, window),
            canary=self._service(canary, window),
        )

"""Prometheus metrics of the adaptation service, every series labelled ``model_version``.

Each :class:`ServingMetrics` owns a ``CollectorRegistry`` (no process-global registration, so
several instances can live in one process, e.g. in tests). Under ``bentoml serve``,
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by BentoML) writes the
values where BentoML's ``/metrics`` collects them. Windowed online MAE for canary analysis is
``Δ metarec_feedback_abs_error_sum / Δ metarec_feedback_total``; ``metarec_online_mae`` is the
rolling MAE over the last ``serving.quality_window`` events. Windowed online hit rate is
``Δ metarec_feedback_hits_total / Δ metarec_feedback_positive_total`` (counters, so Prometheus
can sum them over pods and take a rate); ``metarec_online_hit_rate`` is the rolling hit rate
over the last ``serving.hit_rate_window`` positive events. Both are on for every version served
(not only during a canary), from its first scored feedback event (MAE) and first positive event
of a served user (hit rate): before that they are absent, not 0, so that "no feedback yet" is
never read as "perfect"; the feedback counters exist (at 0) from the start.
``metarec_offline_mae`` is the version's card MAE, the online MAE's quantity, to compare it with;
``metarec_offline_hit_rate`` is the card's hit@10, user-level (1 for a user when any of all the
user's held-out liked items is in the top 10), not comparable with the online hit rate (per
positive feedback event: was the item in the last list served to that user). Series and
label names come from :mod:`metarec.metrics_contract`, which the canary analysis reads them by.
The drift gauges live in :mod:`metarec.serving.drift`, on the same registry.

Feature freshness (:class:`FeatureFreshness`) is the one family not labelled by version: seconds
since each online feature view's latest materialisation, from a reader of the Feast registry
injected by the service builder, updated by the service's feature-refresh timer (never on a
request, never by a scrape).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

from metarec import metrics_contract as contract
from metarec.clock import utc_now

# Reads the Feast registry: view name → end of its latest materialisation (None: never).
MaterializationReader = Callable[[], Mapping[str, datetime | None]]
# How often the registry is read at most (a cheap query; freshness is recomputed every update).
FRESHNESS_READ_EVERY_S = 60.0
_LOG = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


def status_class(status: int) -> str:
    """``200`` → ``"2xx"``."""
    return f"{status // 100}xx"


class ServingMetrics:
    """The service's counters, histogram and gauge for one model version."""

    def __init__(
        self,
        *,
        model_version: str,
        registry: CollectorRegistry | None = None,
        materializations: MaterializationReader | None = None,
        freshness_read_every_s: float = FRESHNESS_READ_EVERY_S,
    ) -> None:
        """Create the metrics.

        Args:
            model_version: Value of the ``model_version`` label (``metarec:v3``).
            registry: Where to register (default: a new private registry).
            materializations: Reader of the Feast registry's materialisation ends (e.g.
                ``metarec.features.freshness.MaterializationReader``); None: no freshness.
            freshness_read_every_s: Read the registry at most this often.
        """
        self.model_version = model_version
        self.registry = registry or CollectorRegistry()
        self.freshness = (
            None
            if materializations is None
            else FeatureFreshness(
                materializations, registry=self.registry, read_every_s=freshness_read_every_s
            )
        )
        self._request_series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._create_request_metrics()
        self._create_adaptation_metrics()
        self._create_feedback_metrics()
        self._create_hit_metrics()
        self._create_offline_metrics()
        self._start_series_at_zero()

    def _create_request_metrics(self) -> None:
        """Requests by endpoint and status class, and their latency."""
        self.requests = Counter(
            contract.REQUESTS,
            "Requests by endpoint and HTTP status class.",
            [contract.ENDPOINT, contract.MODEL_VERSION, contract.STATUS],
            registry=self.registry,
        )
        self.latency = Histogram(
            contract.REQUEST_LATENCY,
            "Request latency (whole HTTP request, in the service process).",
            [contract.ENDPOINT, contract.MODEL_VERSION],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def _create_adaptation_metrics(self) -> None:
        """Inner-loop steps taken and the sizes of adaptation batches."""
        self.adaptation_steps = Counter(
            contract.ADAPTATION_STEPS,
            "Inner-loop gradient steps taken (steps × adapted requests).",
            [contract.MODEL_VERSION],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            contract.ADAPTATION_BATCH_SIZE,
            "Requests adapted together in one batch.",
            [contract.MODEL_VERSION],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )

    def _create_feedback_metrics(self) -> None:
        """Feedback events scored for MAE, their summed absolute error and the rolling MAE.

        Only events with a rating, served by a version that predicts ratings, are scored.
        """
        self.feedback = Counter(
            contract.FEEDBACK,
            "Feedback events with a rating scored against a predicted rating.",
            [contract.MODEL_VERSION],
            registry=self.registry,
        )
        # A Summary exposes exactly ``metarec_feedback_abs_error_sum`` (and ``_count``), a
        # monotonic counter of summed absolute errors (a Counter would add ``_total``).
        self.feedback_abs_error = Summary(
            contract.FEEDBACK_ABS_ERROR,
            "|predicted - observed| of scored feedback events (_sum, _count).",
            [contract.MODEL_VERSION],
            registry=self.registry,
        )
        self.online_mae = Gauge(
            contract.ONLINE_MAE,
            "Rolling MAE of predictions against feedback.",
            [contract.MODEL_VERSION],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )

    def _create_hit_metrics(self) -> None:
        """Positive feedback events, hits among them and the rolling hit rate."""
        self.feedback_positive = Counter(
            contract.FEEDBACK_POSITIVE,
            "Positive feedback events (rating >= 4, or no rating: an interaction) of users who "
            "were served a list.",
            [contract.MODEL_VERSION],
            registry=self.registry,
        )
        self.feedback_hits = Counter(
            contract.FEEDBACK_HITS,
            "Positive feedback events whose item was in the last list served to the user.",
            [contract.MODEL_VERSION],
            registry=self.registry,
        )
        self.online_hit_rate = Gauge(
            contract.ONLINE_HIT_RATE,
            "Rolling share of positive feedback items that were in the list served.",
            [contract.MODEL_VERSION],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )

    def _create_offline_metrics(self) -> None:
        """The version's offline MAE and hit rate (its card's), set by :meth:`observe_offline`."""
        self.offline_mae = Gauge(
            contract.OFFLINE_MAE,
            "Offline MAE of the version on new users (its model card's evaluation).",
            [contract.MODEL_VERSION],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.offline_hit_rate = Gauge(
            contract.OFFLINE_HIT_RATE,
            "Offline hit@10 of the version on new users (its model card's evaluation): user-level,"
            " any held-out liked item in the top 10; not comparable with the online hit rate.",
            [contract.MODEL_VERSION],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )

    def _start_series_at_zero(self) -> None:
        """Create the counters (at 0) from the start, so rates and ratios are defined at once.

        The rolling online gauges are not: they appear with the first feedback they judge.
        """
        version = self.model_version
        for endpoint in ("recommend", "predict", "feedback", "metadata"):
            self.latency.labels(endpoint, version)
            for status in ("2xx", "4xx", "5xx"):
                self.requests.labels(endpoint, version, status)
        for counter in (self.adaptation_steps, self.feedback, self.feedback_positive):
            counter.labels(version)
        self.feedback_hits.labels(version)
        self.feedback_abs_error.labels(version)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one request and its latency."""
        key = (endpoint, status_class(status))
        series = self._request_series.get(key)
        if series is None:  # the labelled children, looked up once per endpoint and class
            series = (
                self.requests.labels(endpoint, self.model_version, key[1]),
                self.latency.labels(endpoint, self.model_version),
            )
            self._request_series[key] = series
        count, latency = series
        count.inc()
        latency.observe(seconds)

    def observe_batch(self, size: int, steps: int) -> None:
        """Count one adaptation batch of ``size`` requests, ``steps`` inner steps each."""
        self.batch_size.labels(self.model_version).observe(size)
        self.adaptation_steps.labels(self.model_version).inc(size * steps)

    def observe_feedback(self, abs_errors: list[float], mae: float | None) -> None:
        """Count scored feedback events and update the rolling MAE (None: nothing scored yet)."""
        self.feedback.labels(self.model_version).inc(len(abs_errors))
        summary = self.feedback_abs_error.labels(self.model_version)
        for error in abs_errors:
            summary.observe(error)
        if mae is not None:
            self.online_mae.labels(self.model_version).set(mae)

    def observe_offline(self, mae: float | None, hit_rate: float | None) -> None:
        """Export the version's offline MAE and hit rate (a None is left unset)."""
        if mae is not None:
            self.offline_mae.labels(self.model_version).set(mae)
        if hit_rate is not None:
            self.offline_hit_rate.labels(self.model_version).set(hit_rate)

    def observe_freshness(self) -> None:
        """Update the feature freshness (no-op without a reader); never raises."""
        if self.freshness is not None:
            self.freshness.update()

    def observe_hits(self, positives: int, hits: int, rate: float | None) -> None:
        """Count positive feedback events and hits; update the rolling hit rate (when known)."""
        self.feedback_positive.labels(self.model_version).inc(positives)
        self.feedback_hits.labels(self.model_version).inc(hits)
        if rate is not None:
            self.online_hit_rate.labels(self.model_version).set(rate)


class FeatureFreshness:
    """Seconds since each online feature view's latest materialisation, as gauges.

    :meth:`update` recomputes the ages from the cached materialisation ends and reads the
    registry again only when the cache is older than ``read_every_s``. A failed read sets
    ``metarec_feature_freshness_error`` to 1 and keeps the last known ends (the ages keep
    growing, an upper bound); nothing is exported for views never read. A view applied but never
    materialised reads +Inf (timestamp 0); a view no longer applied reads NaN (prometheus_client
    cannot remove a series in multiprocess mode).
    """

    def __init__(
        self,
        read: MaterializationReader,
        *,
        registry: CollectorRegistry,
        read_every_s: float = FRESHNESS_READ_EVERY_S,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """Create the gauges (the error gauge at 0); read nothing yet.

        Args:
            read: Reader of the materialisation ends (may raise: Feast unreachable).
            registry: Where to register the gauges.
            read_every_s: Minimum seconds between two registry reads.
            clock: The current time (aware UTC).
        """
        self._read = read
        self._read_every_s = read_every_s
        self._clock = clock
        self._ends: dict[str, datetime | None] = {}
        self._read_at: datetime | None = None
        view = [contract.FEATURE_VIEW]
        self.seconds = Gauge(
            contract.FEATURE_FRESHNESS,
            "Seconds since the feature view's latest materialisation (+Inf: never).",
            view,
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.timestamp = Gauge(
            contract.FEATURE_LAST_MATERIALIZATION,
            "End of the feature view's latest materialisation, Unix time (0: never).",
            view,
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.error = Gauge(
            contract.FEATURE_FRESHNESS_ERROR,
            "1 while the latest read of the Feast registry failed, else 0.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.error.set(0)

    def update(self) -> None:
        """Read the registry if the cache is due, then set every view's age; never raises."""
        now = self._clock()
        due = self._read_at is None or (now - self._read_at).total_seconds() >= self._read_every_s
        if due:
            self._refresh(now)
        for name, end in self._ends.items():
            if end is None:
                self.seconds.labels(name).set(math.inf)
                self.timestamp.labels(name).set(0)
            else:
                self.seconds.labels(name).set(max((now - end).total_seconds(), 0.0))
                self.timestamp.labels(name).set(end.timestamp())

    def _refresh(self, now: datetime) -> None:
        """Read the ends; on failure keep the cached ones and raise the error gauge."""
        self._read_at = now
        try:
            ends = dict(self._read())
        except Exception as exc:  # Feast unreachable: keep serving, show it in the metrics
            _LOG.warning("feature freshness: cannot read the Feast registry (%s)", exc)
            self.error.set(1)
            return
        for gone in self._ends.keys() - ends.keys():
            self.seconds.labels(gone).set(math.nan)
            self.timestamp.labels(gone).set(math.nan)
        self._ends = ends
        self.error.set(0)
